"""`codetailor bench gpu` as CI runs it: without CUDA, every part on tiny models on the CPU,
one JSON file with every part's figures (the LoRA part starts a Python process of its own)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lsp_server.measure import gpu_bench
from lsp_server.measure.gpu_parts import TINY
from tests.fixtures.bench import check_speed_figures, run_bench_gpu


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A short file, so that the tiny models' prompts stay short."""
    lines = [f"def f{i}(value):\n    total = value + {i}\n    return total\n" for i in range(12)]
    path = tmp_path / "small.py"
    path.write_text("\n".join(lines))
    return path


def test_the_cpu_smoke_run_reports_every_part_with_its_figures(
    source: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole command as CI runs it (the LoRA part starts a Python process of its own)."""
    out = tmp_path / "gpu.json"
    report, printed = run_bench_gpu(["--file", str(source), "--out", str(out), "--json"], capsys)
    assert json.loads(printed) == report
    assert report["tiny"] and report["device"] == "cpu" and report["gpu"] is None
    parts = report["parts"]
    assert list(parts) == list(gpu_bench.PARTS)
    check_speed_figures(parts["default_model"])
    check_speed_figures(parts["qwen_shape"])
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
