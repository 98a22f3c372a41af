"""`codetailor bench gpu`: a part that fails or outlasts its budget is reported, not fatal
(the whole smoke run, which starts a training process: tests/e2e/test_bench_gpu_run.py)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from lsp_server import cli
from lsp_server.measure import gpu_bench
from lsp_server.measure.gpu_parts import Bench
from tests.fixtures.bench import check_speed_figures, run_bench_gpu


def test_a_failing_part_is_reported_with_its_reason_and_the_others_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu.json"
    missing = tmp_path / "no-such-model"
    argv = ["--model", str(missing), "--out", str(out)]
    for part in ("default_model", "next_edit", "qwen_shape"):
        argv += ["--only", part]
    report, table = run_bench_gpu(argv, capsys)
    parts = report["parts"]
    assert list(parts) == ["default_model", "next_edit", "qwen_shape"]
    failed = parts["default_model"]
    assert failed["status"] == "failed" and "does not exist" in failed["reason"]
    assert "\n" not in failed["reason"]
    # A part on the same model says why, in one line, without loading it again.
    assert parts["next_edit"]["status"] == "failed"
    assert parts["next_edit"]["reason"].endswith(failed["reason"])
    check_speed_figures(parts["qwen_shape"])
    assert "failed" in table and "does not exist" in table and "ttft_cold_ms" in table


def test_a_part_past_its_budget_is_stopped_and_reported() -> None:
    def endless(bench: Bench) -> dict:
        while True:
            time.sleep(0.01)

    bench = Bench(device="cpu", tiny=True, model="unused", file=Path(__file__))
    started = time.monotonic()
    row = gpu_bench.run_part(endless, bench, budget=0.3)
    assert time.monotonic() - started < 5
    assert row["status"] == "failed" and row["reason"] == "over its budget of 0.3 s"
    assert row["budget_s"] == 0.3


def test_an_unknown_part_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["bench", "gpu", "--only", "warp_drive"])
    assert done.value.code == 2
    assert "default_model" in capsys.readouterr().err


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="no interval timers here")
def test_a_part_leaves_a_timer_running_outside_it_as_it_was() -> None:
    fired: list[int] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        signal.setitimer(signal.ITIMER_REAL, 30)
        with gpu_bench.time_limit(5):
            pass
        left, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 20 < left <= 30 and not fired
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
