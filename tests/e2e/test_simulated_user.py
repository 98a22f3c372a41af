"""`codetailor bench simulate --record` through a real server on a tiny model: the server
writes the feedback log, as it does for an editor, labelled as the simulated user's, and
`feedback stats` reads the same figures back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.feedback import read_events, suggestion_records
from lsp_server.measure.feedback_stats import log_folder
from tests.fixtures.repo import make_repo


def test_simulate_records_what_the_server_showed(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo", modules=4)
    args = ["bench", "simulate", str(repo), "--split", "train", "--model", str(tiny_model_dir)]
    args += ["--suggestions", "6", "--words", "30", "--max-tokens", "6", "--record", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shown"] == 6 and report["requests"] >= 6 and report["recorded"]
    records = suggestion_records(read_events(log_folder(repo)))
    # The simulator counts the rest of a suggestion served by typing-through as shown again;
    # the log keeps it as the same suggestion, typed through.
    assert 0 < len(records) <= report["shown"]
    # Every take ran the item's command, which named a suggestion of the log.
    assert sum(len(r.accepted) for r in records) == report["accepted"]
    # What was not taken was superseded by the next answer, but for the last one of a file.
    untaken = [r for r in records if not r.was_accepted and not r.superseded]
    assert len(untaken) <= len(report["files"])
    for r in records:
        assert r.shown.source == "simulated" and r.shown.model
        assert r.shown.prompt_format and r.shown.path and not r.shown.path.startswith("/")
    assert main(["feedback", "stats", str(repo), "--json", "--source", "simulated"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["overall"]["shown"] == len(records)
    assert stats["overall"]["accepted"] == sum(r.was_accepted for r in records)
