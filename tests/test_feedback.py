"""The local feedback log: crash-safe appends, torn lines, size bound, redaction, retention."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lsp_server.feedback import (
    EVENTS,
    OLDER,
    Dismissed,
    EventLog,
    FeedbackRecorder,
    Suggestion,
    Superseded,
    read_events,
    repo_key,
    suggestion_records,
)
from lsp_server.feedback.recorder import accepted_part, classify_trigger, clip_prefix_for_log
from tests.fixtures.repo import SECRETS

ROOT = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def show(rec: FeedbackRecorder, id: str, prefix: str = "def f(x):\n    ", **kw: object) -> None:
    args = dict(
        uri="file:///r/a.py",
        path="a.py",
        language="python",
        model="tiny",
        prompt_format="prefix-only",
        prefix=prefix,
        suffix="\n",
        text="return x + 1",
        latency_ms=12.5,
    )
    args.update(kw)
    rec.shown(Suggestion(id=id, **args))  # type: ignore[arg-type]


def test_events_round_trip_into_records(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock())
    show(rec, "1")
    rec.accepted("1", "word")
    rec.accepted("1", "full")
    show(rec, "2", text="print(x)")
    rec.typed_through("2", 3)
    rec.superseded("2")
    show(rec, "3")
    rec.dismissed("3")
    records = {r.id: r for r in suggestion_records(read_events(tmp_path))}
    assert records["1"].accepted == ["word", "full"] and records["1"].was_accepted
    assert records["1"].shown.trigger == "line" and records["1"].shown.latency_ms == 12.5
    assert records["2"].typed_chars == 3 and records["2"].superseded
    assert not records["2"].was_accepted
    assert records["3"].dismissed and not records["3"].was_accepted


def test_a_torn_last_line_is_skipped_and_never_glued_to_the_next_event(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock())
    show(rec, "1")
    rec.close()
    with open(tmp_path / EVENTS, "ab") as f:
        f.write(b'{"v":1,"event":"accepted","id":"1","ki')  # a write cut short by a crash
    assert [e.event for e in read_events(tmp_path)] == ["shown"]
    again = FeedbackRecorder(tmp_path, clock=Clock())
    again.dismissed("1")
    assert [e.event for e in read_events(tmp_path)] == ["shown", "dismissed"]


def test_the_log_stays_within_its_bound_dropping_the_oldest_first(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, max_bytes=8_000, clock=Clock())
    for i in range(200):
        show(rec, str(i))
    size = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert size <= 8_000
    ids = [int(e.id) for e in read_events(tmp_path)]
    assert ids == sorted(ids) and ids[-1] == 199 and ids[0] > 0
    assert (tmp_path / OLDER).is_file()


def test_secrets_in_the_document_never_reach_the_log(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock())
    prefix = f'AWS = "{SECRETS["aws_key"]}"\ndb_password = "{SECRETS["password"]}"\nx = '
    show(
        rec,
        "1",
        prefix=prefix,
        suffix=f'\nTOKEN = "{SECRETS["token"]}"\n',
        context=[("b.py", f'KEY = "{SECRETS["high_entropy"]}"\n')],
        text=f'"{SECRETS["token"]}"',
    )
    rec.accepted("1")
    rec.document_changed("file:///r/a.py", prefix + f'"{SECRETS["token"]}"', now=2e6)
    raw = (tmp_path / EVENTS).read_text()
    for secret in SECRETS.values():
        assert secret not in raw
    assert "<AWS_KEY>" in raw and rec.redactions >= 4


def test_feedback_off_writes_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    rec = FeedbackRecorder(folder, enabled=False, clock=Clock())
    show(rec, "1")
    rec.accepted("1")
    rec.typed_through("1", 4)
    rec.superseded("1")
    rec.dismissed("1")
    rec.document_changed("file:///r/a.py", "text", now=5e6)
    rec.poll(now=6e6)
    assert not folder.exists()


def test_retention_is_checked_30_s_and_2_min_after_an_acceptance(tmp_path: Path) -> None:
    clock = Clock(1000.0)
    rec = FeedbackRecorder(tmp_path, clock=clock)
    uri = "file:///r/a.py"
    before = "def f(x):\n    "
    show(rec, "1", prefix=before)
    rec.accepted("1")
    kept = before + "return x + 1\n"
    rec.document_changed(uri, kept, now=1001.0)
    rec.document_changed(uri, kept + "# more\n", now=1010.0)
    # At 1050 the user deletes it; the 30 s check (due at 1030) sees the text before that.
    rec.document_changed(uri, before + "pass\n", now=1050.0)
    assert [e.event for e in read_events(tmp_path)][-1] == "retained_30s"
    rec.poll(now=1121.0)  # no edit since: the 2 min check reads the last known text
    records = suggestion_records(read_events(tmp_path))
    assert records[0].retained == {"retained_30s": True, "retained_120s": False}
    assert records[0].was_kept is False


def test_a_partial_acceptance_is_checked_for_the_part_taken(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock(0.0))
    uri = "file:///r/a.py"
    show(rec, "1", prefix="x = ", text="compute(a, b)\n")
    rec.accepted("1", "word")
    rec.document_changed(uri, "x = compute\n", now=1.0)
    rec.document_changed(uri, "x = compute(1)\n", now=200.0)
    records = suggestion_records(read_events(tmp_path))
    assert records[0].retained == {"retained_30s": True, "retained_120s": True}


def test_accepted_parts_and_trigger_kinds() -> None:
    assert accepted_part("foo(bar)\nbaz", "word") == "foo"
    assert accepted_part("(bar)", "word") == "("
    assert accepted_part("foo(bar)\nbaz\n", "line") == "foo(bar)\n"
    assert accepted_part("\n    return 1\n", "line") == "\n    return 1\n"
    assert classify_trigger("def f():\n    ", "\n", "return 1") == "line"
    assert classify_trigger("x = comp", "\n", "ute()") == "mid-line"
    assert classify_trigger("def f():\n", "", "    a = 1\n    return a\n") == "block"


def test_a_clipped_prefix_rebuilds_the_same_prompt(tmp_path: Path) -> None:
    from lsp_server.completion.prompt import get_format
    from lsp_server.completion.window import PromptWindow
    from tests.tiny import build_tokenizer

    tokenizer = build_tokenizer(tmp_path)
    window = PromptWindow(tokenizer, get_format("prefix-only"), window_tokens=256)
    prefix = "".join(f"value_{i} = compute({i}, {i * 7})\n" for i in range(900)) + "x = "
    kept, start = clip_prefix_for_log(prefix, max_chars=3_000)
    assert len(kept) <= 3_000 and start % 16 == 0 and start > 0
    assert window.prompt_for(kept, "") == window.prompt_for(prefix, "")


def test_repo_keys_differ_by_path_and_are_stable(tmp_path: Path) -> None:
    (tmp_path / "a" / "proj").mkdir(parents=True)
    (tmp_path / "b" / "proj").mkdir(parents=True)
    first, second = repo_key(tmp_path / "a" / "proj"), repo_key(tmp_path / "b" / "proj")
    assert first != second and first.startswith("proj-")
    assert repo_key(tmp_path / "a" / "proj") == first


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from lsp_server.feedback import FeedbackRecorder, Suggestion
    rec = FeedbackRecorder(Path(sys.argv[1]))
    i = 0
    while True:
        rec.shown(Suggestion(id=str(i), uri="file:///a.py", path="a.py", language="python",
                             model="m", prompt_format="prefix-only", prefix="x = " * 200,
                             text="value_" + str(i), latency_ms=1.0))
        print(i, flush=True)   # acknowledged only after the write and fsync returned
        i += 1
    """
)


def test_events_survive_a_kill_9_of_the_writer(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True
    )
    assert proc.stdout is not None
    acknowledged = -1
    try:
        for line in proc.stdout:  # bounded by the count below, not by time
            acknowledged = int(line)
            if acknowledged >= 50:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert acknowledged >= 50
    ids = [int(e.id) for e in read_events(tmp_path)]
    assert ids[: acknowledged + 1] == list(range(acknowledged + 1))
    lines = (tmp_path / EVENTS).read_bytes().split(b"\n")
    for line in lines[:-1]:
        json.loads(line)


@pytest.mark.parametrize("kind", ["superseded", "dismissed"])
def test_outcomes_of_a_forgotten_suggestion_are_ignored(tmp_path: Path, kind: str) -> None:
    log = EventLog(tmp_path)
    log.append({"superseded": Superseded, "dismissed": Dismissed}[kind](id="gone", t=1.0))
    assert suggestion_records(read_events(tmp_path)) == []


def test_the_log_and_the_preference_data_are_pure() -> None:
    code = (
        "import sys, lsp_server.feedback, finetune.data.preferences, finetune.preference;"
        "import lsp_server.measure.feedback_stats, lsp_server.measure.simulated_user;"
        "print(sorted(m for m in ('torch', 'pygls', 'transformers', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


def test_the_session_reaches_the_log_only_through_its_port() -> None:
    """The pure session never loads the log's room (its file I/O and its thread)."""
    code = (
        "import sys, lsp_server.session.session;"
        "print(sorted(m for m in sys.modules if m.startswith('lsp_server.feedback')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.strip() == "[]", out.stderr


def test_what_the_user_typed_at_an_ignored_suggestion_is_recorded_once_the_line_ends(
    tmp_path: Path,
) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock())
    prefix, suffix = "def f(x):\n    ", "\n\ndef g():\n    pass\n"
    show(rec, "s1", prefix=prefix, suffix=suffix, text="return x + 1")
    rec.document_changed("file:///r/a.py", prefix + "return " + suffix)
    assert [e.event for e in read_events(tmp_path)] == ["shown"]  # the line goes on
    rec.document_changed("file:///r/a.py", prefix + "return x * 2\n    y" + suffix)
    rec.document_changed("file:///r/a.py", prefix + "return x * 2\n    y = 3" + suffix)
    typed = [e for e in read_events(tmp_path) if e.event == "typed"]
    assert [(e.id, e.text) for e in typed] == [("s1", "return x * 2")]
    assert suggestion_records(read_events(tmp_path))[0].typed == "return x * 2"


def test_typing_is_followed_until_the_place_itself_is_edited(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock())
    prefix, suffix = "def f(x):\n    ", "\n"
    show(rec, "s1", prefix=prefix, suffix=suffix)
    show(rec, "s2", prefix=prefix, suffix=suffix, uri="file:///r/b.py")
    rec.document_changed("file:///r/a.py", prefix + "ret" + suffix)
    rec.document_changed("file:///r/a.py", "# a new first line\n" + prefix + "ret" + suffix)
    rec.document_changed("file:///r/a.py", "# a new first line\n" + prefix + "return 1\n\n")
    events = read_events(tmp_path)
    assert [(e.id, e.text) for e in events if e.event == "typed"] == [("s1", "ret")]


def test_what_was_typed_is_redacted_and_bounded(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=Clock())
    show(rec, "s1", prefix="x = ", suffix="")
    secret = SECRETS["token"]
    rec.document_changed("file:///r/a.py", f'x = "{secret}"\n')
    rec.document_changed("file:///r/a.py", "x = " + "y" * 500)
    show(rec, "s2", prefix="x = ", suffix="")
    rec.document_changed("file:///r/a.py", "x = " + "y" * 500)
    texts = [e.text for e in read_events(tmp_path) if e.event == "typed"]
    assert len(texts) == 2 and secret not in texts[0] and len(texts[1]) == 200
