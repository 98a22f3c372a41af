"""The feedback log against a hostile repository or client (issue 28's Lows): a token in a
file name, a client repeating accepts, another writer's torn line, corrupt logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finetune.config import PreferenceConfig
from finetune.preference.records import load_records
from lsp_server.cli import main
from lsp_server.errors import CodetailorError
from lsp_server.feedback import (
    EVENTS,
    EventLog,
    FeedbackRecorder,
    Shown,
    Suggestion,
    read_events,
    remove_log,
    suggestion_records,
)
from lsp_server.measure.feedback_stats import log_folder
from tests.fixtures.repo import SECRETS

TOKEN = SECRETS["token"]
NESTED = b"[" * 200_000 + b"\n"  # json.loads raises RecursionError on it


def suggestion(id: str, uri: str = "file:///r/a.py", path: str = "a.py") -> Suggestion:
    return Suggestion(
        id=id,
        uri=uri,
        path=path,
        language="python",
        model="tiny",
        prompt_format="prefix-only",
        prefix="def f(x):\n    ",
        suffix="\n",
        text="return x + 1",
        latency_ms=1.0,
        context=[(f"deploy-{TOKEN}.py", "x = 1\n")],
    )


def test_a_token_in_a_file_name_is_redacted_in_uri_and_path_and_retention_still_matches(
    tmp_path: Path,
) -> None:
    clock = [1_000.0]
    rec = FeedbackRecorder(tmp_path, clock=lambda: clock[0])
    uri = f"file:///r/deploy-{TOKEN}.py"
    rec.shown(suggestion("1", uri=uri, path=f"deploy-{TOKEN}.py"))
    rec.accepted("1")
    rec.document_changed(uri, "def f(x):\n    return x + 1\n", now=clock[0] + 1)
    rec.poll(now=clock[0] + 200)
    raw = (tmp_path / EVENTS).read_text()
    assert TOKEN not in raw
    shown = next(e for e in read_events(tmp_path) if isinstance(e, Shown))
    assert "deploy-" in shown.uri and "deploy-" in (shown.path or "")
    retained = suggestion_records(read_events(tmp_path))[0].retained
    assert retained == {"retained_30s": True, "retained_120s": True}


def test_repeated_accepts_of_one_suggestion_are_logged_once_and_syncs_are_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syncs = []
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd))
    rec = FeedbackRecorder(tmp_path)
    rec.shown(suggestion("1"))
    for _ in range(2_000):
        rec.accepted("1")
        rec.accepted("never-shown")
    for i in range(500):
        rec.superseded(str(i))
    assert [e.event for e in read_events(tmp_path)].count("accepted") == 1
    assert len(syncs) <= 5  # one per second at most, not one per event
    rec.close()
    assert len(syncs) <= 6  # and the last events are synced on close


def test_partial_accepts_are_logged_until_the_whole_suggestion_is_in(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path)
    rec.shown(suggestion("1"))
    for _ in range(50):
        rec.accepted("1", "word")
    kinds = [e.event for e in read_events(tmp_path)]
    assert 2 <= kinds.count("accepted") <= 5  # one per word of "return x + 1", at most


def test_another_writers_torn_line_does_not_swallow_our_next_event(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    rec = FeedbackRecorder(tmp_path)
    rec.log = log
    rec.shown(suggestion("1"))
    with open(tmp_path / EVENTS, "ab") as other:  # another server on the same repository
        other.write(b'{"v":1,"event":"shown","id":"2","ur')
    rec.superseded("1")
    rec.dismissed("1")
    assert [e.event for e in read_events(tmp_path)] == ["shown", "superseded", "dismissed"]


@pytest.mark.parametrize("corruption", ["nested", "folder"])
def test_corrupt_logs_give_one_line_not_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], corruption: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    folder = log_folder(repo)
    folder.mkdir(parents=True)
    if corruption == "nested":
        (folder / EVENTS).write_bytes(NESTED * 3)
    else:
        (folder / EVENTS).mkdir()
    assert main(["feedback", "stats", str(repo)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    with pytest.raises(CodetailorError):
        load_records(PreferenceConfig(repo=str(repo), log_dir=str(folder)))
    assert main(["feedback", "clear", str(repo)]) == 0
    assert not folder.exists()


def test_clear_removes_a_log_folder_nested_deeper_than_a_path_can_be(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    folder.mkdir()
    (folder / EVENTS).write_bytes(NESTED)
    fd = os.open(folder, os.O_RDONLY)
    for _ in range(1_100):  # past PATH_MAX, and deeper than shutil.rmtree recurses
        os.mkdir("d" * 19, dir_fd=fd)
        inner = os.open("d" * 19, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
        os.close(os.open("x", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
    os.close(fd)
    (folder / "link").symlink_to(tmp_path)  # never followed out
    (tmp_path / "keep").write_text("kept")
    remove_log(folder)
    assert not folder.exists() and (tmp_path / "keep").read_text() == "kept"
