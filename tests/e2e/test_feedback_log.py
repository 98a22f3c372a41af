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
from lsp_server.feedback import read_events
from lsp_server.measure.feedback_stats import log_folder
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
    assert [(e.event, e.id) for e in events] == [("shown", id), ("accepted", id)]
    shown = events[0]
    assert shown.suggestion == item["insertText"] and shown.path == "app.py"
    assert shown.source == "editor" and shown.model
    written = b"".join(p.read_bytes() for p in log_folder(repo).iterdir())
    assert SECRET.encode() not in written and b"AWS_KEY" in written
    assert main(["feedback", "stats", str(repo), "--json"]) == 0
    overall = json.loads(capsys.readouterr().out)["overall"]
    assert (overall["shown"], overall["accepted"], overall["acceptance_rate"]) == (1, 1, 1.0)


def test_feedback_false_writes_nothing(endless_model_dir: Path, repo: Path) -> None:
    item = accept_one(endless_model_dir, repo, OPTIONS | {"feedback": False})
    # The item still carries an id, for the accept count (issue 28); nothing is logged.
    kind, id = item["command"]["arguments"]
    assert item["insertText"] and kind == "inline" and id
    assert not (repo.parent / "home" / "feedback").exists()


def test_events_written_before_a_kill_9_of_the_server_read_back(
    endless_model_dir: Path, repo: Path
) -> None:
    """A real server logs suggestions, accepts and dismissals, is killed with SIGKILL,
    and the log holds every event it had reported written; a torn line at the end (as a
    kill in the middle of a write leaves) is skipped, and the next server appends after it."""
    server = spawn(endless_model_dir, options=OPTIONS, root_uri=repo.as_uri())
    uri = (repo / "app.py").as_uri()
    try:
        server.open(uri, DOCUMENT)
        text = DOCUMENT
        for n in range(4):
            text += f"{n}\nx = "
            server.notify(
                "textDocument/didChange",
                {
                    "textDocument": {"uri": uri, "version": n + 2},
                    "contentChanges": [{"text": text}],
                },
            )
            (item,) = server.inline(uri, n + 2, 4)
            _, id = item["command"]["arguments"]
            if n % 2:
                server.notify("codetailor/dismissed", {"id": id, "reason": "insert-leave"})
            else:
                server.request(
                    "workspace/executeCommand",
                    {"command": "codetailor.accepted", "arguments": ["inline", id]},
                )
        # 4 shown, 2 accepted, 2 dismissed, and 3 typed (each change finishes the line of
        # the place before): wait until all 11 are on disk.
        status = server.wait_status(
            lambda s: s["feedback"]["eventsWritten"] >= 11, "events not written", timeout=30
        )
        written = status["feedback"]["eventsWritten"]
        server.proc.kill()  # SIGKILL: no shutdown, no drain
        server.proc.wait()
    finally:
        server.close()
    folder = log_folder(repo)
    events = read_events(folder)
    assert len(events) >= written
    kinds = [e.event for e in events]
    assert kinds.count("shown") == 4 and kinds.count("accepted") == 2
    assert kinds.count("dismissed") == 2 and kinds.count("typed") == 3
    with open(folder / "events.jsonl", "ab") as f:  # a write cut short by the kill
        f.write(b'{"v":1,"event":"accepted","id":"torn')
    assert read_events(folder) == events
    accept_one(endless_model_dir, repo, OPTIONS)  # a new server appends after the torn line
    after = read_events(folder)
    assert after[: len(events)] == events
    assert [e.event for e in after[len(events) :]] == ["shown", "accepted"]
