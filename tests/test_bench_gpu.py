"""`codetailor bench gpu`: without CUDA its parts run on tiny models on the CPU, write one
JSON file with every part's figures, and a part that fails is reported, not fatal."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from lsp_server import cli
from lsp_server.measure import gpu_bench
from lsp_server.measure.gpu_parts import TINY, Bench

SPEED = (
    "prompt_tokens",
    "ttft_cold_ms",
    "ttft_warm_ms",
    "warm_cached_tokens",
    "decode_tokens_per_s",
    "tokens_per_forward",
    "compiled",
)
COMMON = ("status", "seconds", "budget_s", "peak_gpu_memory_mb")


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A short file, so that the tiny models' prompts stay short."""
    lines = [f"def f{i}(value):\n    total = value + {i}\n    return total\n" for i in range(12)]
    path = tmp_path / "small.py"
    path.write_text("\n".join(lines))
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[dict, str]:
    assert cli.main(["bench", "gpu", *argv]) == 0
    out = capsys.readouterr().out
    report = json.loads(Path(argv[argv.index("--out") + 1]).read_text())
    return report, out


def _speed_figures(part: dict) -> None:
    assert part["status"] == "ok", part
    for key in (*COMMON, *SPEED):
        assert key in part, key
    assert part["peak_gpu_memory_mb"] is None  # no GPU here
    # The warm request found the prompt but its last three tokens in the KV cache.
    assert part["warm_cached_tokens"] == part["prompt_tokens"] - 3
    assert part["ttft_cold_ms"] > 0 and part["decode_tokens_per_s"] > 0
    assert part["tokens_per_forward"] >= 1


@pytest.mark.slow
def test_the_cpu_smoke_run_reports_every_part_with_its_figures(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole command as CI runs it (the LoRA part starts a Python process of its own)."""
    out = tmp_path / "gpu.json"
    report, printed = _run(["--file", str(source), "--out", str(out), "--json"], capsys)
    assert json.loads(printed) == report
    assert report["tiny"] and report["device"] == "cpu" and report["gpu"] is None
    parts = report["parts"]
    assert list(parts) == list(gpu_bench.PARTS)
    _speed_figures(parts["default_model"])
    _speed_figures(parts["qwen_shape"])
    identity = parts["compiled_identity"]
    assert identity["status"] == "ok" and identity["prompts"] == TINY.identity_prompts
    # fp32 weights (the tests' CPU): the static-cache steps equal eager decoding exactly.
    assert identity["identical"] == identity["prompts"] and identity["first_difference_at"] == []
    edit = parts["next_edit"]
    assert edit["status"] == "ok" and edit["places"] == TINY.next_edit_places
    assert edit["next_edit"]["p50_ms"] > 0 and edit["completion"]["p50_ms"] > 0
    lora = parts["lora_training"]
    assert lora["status"] == "ok", lora
    assert lora["ours"]["tokens_per_s"] > 0 and lora["hf"]["tokens_per_s"] > 0
    # Same weights, LoRA, optimizer and batches: both trainers saw the same losses.
    assert lora["ours"]["mean_loss"] == pytest.approx(lora["hf"]["mean_loss"], rel=1e-3)
    assert lora["ours_over_hf"] == pytest.approx(
        lora["ours"]["tokens_per_s"] / lora["hf"]["tokens_per_s"], rel=0.01
    )


def test_a_failing_part_is_reported_with_its_reason_and_the_others_run(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu.json"
    missing = tmp_path / "no-such-model"
    argv = ["--model", str(missing), "--file", str(source), "--out", str(out)]
    for part in ("default_model", "next_edit", "qwen_shape"):
        argv += ["--only", part]
    report, table = _run(argv, capsys)
    parts = report["parts"]
    assert list(parts) == ["default_model", "next_edit", "qwen_shape"]
    failed = parts["default_model"]
    assert failed["status"] == "failed" and "does not exist" in failed["reason"]
    assert "\n" not in failed["reason"]
    # A part on the same model says why, in one line, without loading it again.
    assert parts["next_edit"]["status"] == "failed"
    assert parts["next_edit"]["reason"].endswith(failed["reason"])
    _speed_figures(parts["qwen_shape"])
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
