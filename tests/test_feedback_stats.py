"""`codetailor feedback stats|clear`: the figures a person sees from their own log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.feedback import FeedbackRecorder, Suggestion, read_events, suggestion_records
from lsp_server.measure.feedback_stats import feedback_stats, log_folder

DAY = 86_400.0


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def fill(folder: Path) -> None:
    """Day 1: 4 Python suggestions at line starts, 1 accepted (kept). Day 2: 2 Rust
    mid-line suggestions, both accepted, one deleted within 30 s."""
    clock = Clock(1_700_000_000.0)
    rec = FeedbackRecorder(folder, clock=clock)

    def show(id: str, language: str, prefix: str, latency: float) -> None:
        rec.shown(
            Suggestion(
                id=id,
                uri=f"file:///r/{id}",
                path=id,
                language=language,
                model="m",
                prompt_format="prefix-only",
                prefix=prefix,
                suffix="\n",
                text="value(1)",
                latency_ms=latency,
            )
        )

    for i, latency in enumerate((100.0, 300.0, 500.0, 700.0)):
        show(f"p{i}", "python", "x = 1\n", latency)
    rec.accepted("p0")
    rec.document_changed("file:///r/p0", "x = 1\nvalue(1)\n", now=clock.now + 1)
    rec.poll(now=clock.now + 200)
    for id in ("p1", "p2"):
        rec.superseded(id)
    rec.dismissed("p3")
    clock.now += DAY
    show("r0", "rust", "let a = ", 50.0)
    show("r1", "rust", "let b = ", 150.0)
    rec.accepted("r0")
    rec.typed_through("r1", len("value(1)"))
    rec.document_changed("file:///r/r0", "let a = value(1)\n", now=clock.now + 1)
    rec.document_changed("file:///r/r0", "let a = 2\n", now=clock.now + 20)
    rec.document_changed("file:///r/r1", "let b = value(1)\n", now=clock.now + 1)
    rec.poll(now=clock.now + 500)
    rec.close()


def test_stats_by_language_trigger_and_day(tmp_path: Path) -> None:
    fill(tmp_path)
    stats = feedback_stats(suggestion_records(read_events(tmp_path)))
    assert stats["overall"]["shown"] == 6 and stats["overall"]["accepted"] == 3
    assert stats["overall"]["dismissed"] == 1
    assert stats["overall"]["acceptance_rate"] == 0.5
    assert stats["by_language"]["python"]["acceptance_rate"] == 0.25
    assert stats["by_language"]["rust"]["acceptance_rate"] == 1.0
    assert set(stats["by_trigger"]) == {"line", "mid-line"}
    assert stats["by_trigger"]["mid-line"]["retained_30s"] == 0.5
    assert stats["overall"]["retained_120s"] == pytest.approx(2 / 3, abs=1e-3)
    assert [v["shown"] for v in stats["by_day"].values()] == [4, 2]
    # accepted: 100, 50, 150 -> 100; ignored: 300, 500, 700 -> 500
    assert stats["latency_ms_p50"] == {"accepted": 100.0, "ignored": 500.0}


def test_the_command_prints_json_writes_a_plot_and_clears(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    fill(log_folder(repo))
    plot = tmp_path / "acceptance.png"
    assert main(["feedback", "stats", str(repo), "--json", "--plot", str(plot)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["overall"]["acceptance_rate"] == 0.5
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["feedback", "stats", str(repo)]) == 0
    assert "rust" in capsys.readouterr().out
    assert main(["feedback", "clear", str(repo)]) == 0
    assert not log_folder(repo).exists()
    assert main(["feedback", "stats", str(repo)]) == 2
    assert "no feedback recorded" in capsys.readouterr().err


def test_a_latency_with_no_suggestions_behind_it_is_a_dash_not_none_ms(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lsp_server.measure.feedback_stats import print_stats

    stats = {
        "overall": {"shown": 1, "accepted": 0, "acceptance_rate": 0.0},
        "by_language": {},
        "by_trigger": {},
        "by_day": {},
        "latency_ms_p50": {"accepted": None, "ignored": 120.0},
    }
    stats["overall"] |= {"retained_30s": None, "retained_120s": None}
    print_stats(stats, Path("/log"))
    text = capsys.readouterr().out
    assert "None" not in text
    assert "120.0 ms" in text
