"""`codetailor bench simulate` through a real server on a tiny model: every shown suggestion
and its outcome reach the feedback log, and `feedback stats` reads the same figures back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.measure.feedback_stats import log_folder
from lsp_server.session.feedback import read_events, suggestion_records
from tests.fixtures.repo import make_repo


def test_simulate_records_what_the_server_showed(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_repo(tmp_path / "repo", modules=4)
    args = ["bench", "simulate", str(repo), "--split", "train", "--model", str(tiny_model_dir)]
    args += ["--suggestions", "6", "--words", "30", "--max-tokens", "6", "--record", "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["shown"] == 6 and report["requests"] >= 6
    records = suggestion_records(read_events(log_folder(repo)))
    assert len(records) == report["shown"]
    assert sum(r.was_accepted for r in records) == report["accepted"]
    assert all(r.superseded for r in records if not r.was_accepted)
    assert all(r.shown["source"] == "simulated" and r.shown["model"] for r in records)
    assert main(["feedback", "stats", str(repo), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["overall"]["shown"] == report["shown"]
    assert stats["overall"]["accepted"] == report["accepted"]
