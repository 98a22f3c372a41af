"""The real server writes the feedback log: an inline completion, then its item's
`codetailor.accepted` command, land as `shown` + `accepted` under the item's id, and
`codetailor feedback stats REPO` reads acceptance 1/1 back. A secret in the document
never reaches the log; `feedback: false` writes nothing.

The server drains its queued events when the client shuts it down, so each test
reads the log after `shutdown` returned (the process has exited): no waiting on time.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.measure.feedback_stats import log_folder
from lsp_server.session.feedback import read_events
from tests.e2e.conftest import spawn

OPTIONS = {"maxTokens": 6, "timeBudgetMs": 60000, "multiline": "never", "context": False}
SECRET = "AKIAIOSFODNN7EXAMPLE"
DOCUMENT = f'AWS_KEY = "{SECRET}"\nx = '


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace folder, and a cache home of this test's own (the server inherits it)."""
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    root = tmp_path / "project"
    root.mkdir()
    (root / "app.py").write_text(DOCUMENT)
    return root


def accept_one(endless_model_dir: Path, repo: Path, options: dict) -> dict:
    """Open app.py, take one inline completion and run its command; the item."""
    server = spawn(endless_model_dir, options=options, root_uri=repo.as_uri())
    try:
        uri = (repo / "app.py").as_uri()
        server.open(uri, DOCUMENT)
        (item,) = server.inline(uri, 1, 4)
        command = item["command"]
        assert command["command"] == "codetailor.accepted"
        server.request(
            "workspace/executeCommand",
            {"command": command["command"], "arguments": command.get("arguments", [])},
        )
        assert server.shutdown() == 0
    finally:
        server.close()
    return item


def test_an_accepted_inline_completion_is_in_the_log_and_the_stats(
    endless_model_dir: Path, repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    item = accept_one(endless_model_dir, repo, OPTIONS)
    kind, id = item["command"]["arguments"]
    assert kind == "inline" and id
    events = read_events(log_folder(repo))
    assert [(e["event"], e["id"]) for e in events] == [("shown", id), ("accepted", id)]
    shown = events[0]
    assert shown["suggestion"] == item["insertText"] and shown["path"] == "app.py"
    assert shown["source"] == "editor" and shown["model"]
    written = b"".join(p.read_bytes() for p in log_folder(repo).iterdir())
    assert SECRET.encode() not in written and b"AWS_KEY" in written
    assert main(["feedback", "stats", str(repo), "--json"]) == 0
    overall = json.loads(capsys.readouterr().out)["overall"]
    assert (overall["shown"], overall["accepted"], overall["acceptance_rate"]) == (1, 1, 1.0)


def test_feedback_false_writes_nothing(endless_model_dir: Path, repo: Path) -> None:
    item = accept_one(endless_model_dir, repo, OPTIONS | {"feedback": False})
    assert item["insertText"] and item["command"]["arguments"] == ["inline"]
    assert not (repo.parent / "home" / "feedback").exists()
