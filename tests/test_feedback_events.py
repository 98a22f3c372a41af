"""The feedback log's disk contract: typed events, the lines they are, older and newer logs."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.errors import CodetailorError
from lsp_server.feedback import (
    EVENTS,
    Accepted,
    Dismissed,
    FeedbackEvent,
    FeedbackRecorder,
    NewerSchemaError,
    Retained,
    Shown,
    Suggestion,
    Typed,
    TypedThrough,
    count_events,
    read_events,
    read_suggestions,
)
from lsp_server.measure.feedback_stats import log_folder

# Written by the recorder before the log had typed events (lsp_server/session/feedback.py
# at 4a2932c), for the calls that `record_the_same` makes today.
OLD_SHOWN = (
    r'{"v":1,"event":"shown","id":"a1","t":1700000000.0,"uri":"file:///r/pkg/m.py",'
    r'"path":"pkg/m.py","language":"python","trigger":"line","model":"smollm2-135m",'
    r'"adapter":null,"prompt_format":"prefix-only","window_tokens":1024,"repo":"r",'
    r'"prefix":"def f(x):\n    ","prefix_start_line":0,'
    r'"suffix":"\n\ndef g():\n    pass\n","context":[["lib/u.py",'
    r'"def u():\n    return \"é\"\n"]],"suggestion":"return x + 1","latency_ms":12.3,'
    r'"source":"editor"}'
)
OLD_LOG = (
    OLD_SHOWN
    + "\n"
    + r"""{"v":1,"event":"accepted","id":"a1","t":1700000000.0,"kind":"word"}
{"v":1,"event":"accepted","id":"a1","t":1700000000.0,"kind":"line","chars":5}
{"v":1,"event":"typed_through","id":"a1","t":1700000000.0,"chars":3}
{"v":1,"event":"superseded","id":"a1","t":1700000000.0}
{"v":1,"event":"dismissed","id":"a1","t":1700000000.0}
{"v":1,"event":"dismissed","id":"a1","t":1700000000.0,"reason":"insert-leave"}
{"v":1,"event":"typed","id":"a1","t":1700000000.0,"text":"return x + 1"}
{"v":1,"event":"retained_30s","id":"a1","t":1700000200.0,"kept":false}
{"v":1,"event":"retained_120s","id":"a1","t":1700000200.0,"kept":false}
"""
)

SHOWN = Shown(
    id="a1",
    t=1_700_000_000.0,
    uri="file:///r/pkg/m.py",
    path="pkg/m.py",
    language="python",
    trigger="line",
    model="smollm2-135m",
    adapter=None,
    prompt_format="prefix-only",
    window_tokens=1024,
    repo="r",
    prefix="def f(x):\n    ",
    prefix_start_line=0,
    suffix="\n\ndef g():\n    pass\n",
    context=(("lib/u.py", 'def u():\n    return "é"\n'),),
    suggestion="return x + 1",
    latency_ms=12.3,
    source="editor",
)


def record_the_same(folder: Path) -> None:
    """The calls that wrote OLD_LOG, through today's recorder."""
    now = [1_700_000_000.0]
    rec = FeedbackRecorder(folder, clock=lambda: now[0])
    suffix = "\n\ndef g():\n    pass\n"
    rec.shown(
        Suggestion(
            id="a1",
            uri="file:///r/pkg/m.py",
            path="pkg/m.py",
            language="python",
            prefix="def f(x):\n    ",
            suffix=suffix,
            text="return x + 1",
            latency_ms=12.34,
            context=[("lib/u.py", 'def u():\n    return "é"\n')],
            model="smollm2-135m",
            prompt_format="prefix-only",
            window_tokens=1024,
            repo="r",
        )
    )
    rec.accepted("a1", "word")
    rec.accepted("a1", "line", text="x + 1")
    rec.typed_through("a1", 3)
    rec.superseded("a1")
    rec.dismissed("a1")
    rec.dismissed("a1", "insert-leave")
    rec.document_changed("file:///r/pkg/m.py", "def f(x):\n    return x + 1\n" + suffix, now[0] + 1)
    now[0] += 200
    rec.poll()
    rec.close()


def test_a_log_written_before_typed_events_reads_back_identically(tmp_path: Path) -> None:
    (tmp_path / EVENTS).write_text(OLD_LOG, encoding="utf-8")
    events = read_events(tmp_path)
    assert events[0] == SHOWN
    assert events[1:] == [
        Accepted(id="a1", t=1_700_000_000.0, kind="word"),
        Accepted(id="a1", t=1_700_000_000.0, kind="line", chars=5),
        TypedThrough(id="a1", t=1_700_000_000.0, chars=3),
        FeedbackEvent.from_json('{"v":1,"event":"superseded","id":"a1","t":1700000000.0}'),
        Dismissed(id="a1", t=1_700_000_000.0),
        Dismissed(id="a1", t=1_700_000_000.0, reason="insert-leave"),
        Typed(id="a1", t=1_700_000_000.0, text="return x + 1"),
        Retained(id="a1", t=1_700_000_200.0, check="retained_30s", kept=False),
        Retained(id="a1", t=1_700_000_200.0, check="retained_120s", kept=False),
    ]
    # Each line is what its event writes, byte for byte.
    assert "".join(e.to_json() + "\n" for e in events) == OLD_LOG
    (record,) = read_suggestions(tmp_path)
    assert record.accepted == ["word", "line"] and record.typed_chars == 3
    assert record.superseded and record.dismissed and record.typed == "return x + 1"
    assert record.retained == {"retained_30s": False, "retained_120s": False}


def test_the_recorder_writes_the_same_lines_as_before(tmp_path: Path) -> None:
    record_the_same(tmp_path)
    assert (tmp_path / EVENTS).read_text(encoding="utf-8") == OLD_LOG


def test_missing_and_null_fields_take_the_records_defaults() -> None:
    event = FeedbackEvent.from_json('{"event":"shown","id":"s","source":null,"context":null}')
    assert event == Shown(id="s")
    assert isinstance(event, Shown) and event.source == "editor" and event.latency_ms == 0.0
    assert event.prefix == "" and event.prefix_start_line == 0 and event.context == ()
    accepted = Accepted.from_json('{"v":1,"event":"accepted","id":7}')
    assert accepted == Accepted(id="7", kind="full", chars=None)
    with pytest.raises(ValueError, match="not accepted"):
        Accepted.from_json('{"v":1,"event":"superseded","id":"x"}')


def test_a_line_that_is_no_event_is_skipped_and_a_source_filters(tmp_path: Path) -> None:
    lines = [
        SHOWN.to_json(),
        '{"v":1,"event":"rated","id":"a1","t":2.0,"stars":5}',  # a kind added later
        '{"v":1,"event":"typed_through","id":"a1","chars":"many"}',  # garbled field
        "[1, 2]",
        '{"v":1,"event":"shown","id":"s2","t":3.0,"suggestion":"x","source":"simulated"}',
    ]
    (tmp_path / EVENTS).write_text("\n".join(lines) + "\n")
    assert [e.id for e in read_events(tmp_path)] == ["a1", "s2"]
    assert count_events(tmp_path) == 4  # what `feedback clear` says it removed
    assert [r.id for r in read_suggestions(tmp_path, source="simulated")] == ["s2"]
    assert [r.id for r in read_suggestions(tmp_path, source="editor")] == ["a1"]


def test_a_newer_schema_is_refused_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    newer = '{"v":2,"event":"shown","id":"n","t":1.0}'
    with pytest.raises(NewerSchemaError, match="schema 2 is newer .* upgrade codetailor"):
        FeedbackEvent.from_json(newer)
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    repo = tmp_path / "repo"
    repo.mkdir()
    folder = log_folder(repo)
    folder.mkdir(parents=True)
    (folder / EVENTS).write_text(SHOWN.to_json() + "\n" + newer + "\n")
    with pytest.raises(CodetailorError, match="feedback log .*: an event of schema 2"):
        read_events(folder)
    assert main(["feedback", "stats", str(repo)]) == 2
    err = capsys.readouterr().err.strip()
    assert "upgrade codetailor" in err and len(err.splitlines()) == 1
    assert main(["feedback", "clear", str(repo)]) == 0  # clearing needs no reading
    assert "removed 2 events" in capsys.readouterr().err and not folder.exists()
