"""What makes LoRA training faster on a CPU without changing what it learns: the LoRA
dropout drawn as gaps between drops, and the frozen base in bf16 where the CPU has it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from finetune.config import FinetuneConfig
from finetune.dropout import GapDropout, drop_positions, use_gap_dropout
from finetune.train import _wrap_lora, training_dtype
from lsp_server.model import loading


def test_drop_positions_are_distinct_ascending_and_inside_the_row() -> None:
    torch.manual_seed(0)
    at = drop_positions(10_000, 0.3)
    assert at.dtype == torch.long
    assert bool((at[1:] > at[:-1]).all())
    assert int(at.min()) >= 0 and int(at.max()) < 10_000


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_each_element_is_dropped_with_probability_p_wherever_it_lies(p: float) -> None:
    """The drop rate is p within sampling error in every tenth of the row (the first and
    the last elements included: the gaps start before 0 and run past the end)."""
    torch.manual_seed(1)
    n, rows = 20_000, 20
    counts = torch.zeros(10)
    for _ in range(rows):
        at = drop_positions(n, p)
        counts += torch.bincount(at * 10 // n, minlength=10).float()
    per_tenth = rows * n / 10
    sd = math.sqrt(per_tenth * p * (1 - p))
    assert all(abs(c - per_tenth * p) < 5 * sd for c in counts.tolist())
    first = sum(int(drop_positions(50, p)[:1].eq(0).sum()) for _ in range(2_000))
    assert abs(first / 2_000 - p) < 5 * math.sqrt(p * (1 - p) / 2_000)


def test_no_drops_at_p_zero_or_in_an_empty_row() -> None:
    assert drop_positions(100, 0.0).numel() == 0
    assert drop_positions(0, 0.5).numel() == 0


def test_gap_dropout_scales_what_it_keeps_and_passes_gradients_through_the_mask() -> None:
    torch.manual_seed(2)
    drop = GapDropout(0.25)
    x = torch.randn(8, 64, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert torch.allclose(y[kept], x[kept] / 0.75)
    assert 0.15 < 1 - kept.float().mean().item() < 0.35
    y.sum().backward()
    assert x.grad is not None
    assert torch.allclose(x.grad, kept.float() / 0.75)


def test_gap_dropout_is_the_identity_in_eval_mode_and_at_p_zero() -> None:
    x = torch.randn(4, 16)
    assert GapDropout(0.5).eval()(x) is x
    assert GapDropout(0.0)(x) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        GapDropout(1.0)


def test_every_lora_dropout_of_a_peft_model_is_replaced(tiny_model_dir: Path) -> None:
    loaded = loading.load_model(str(tiny_model_dir), device="cpu", dtype="float32", training=True)
    cfg = FinetuneConfig(repo=".", out="unused", lora_dropout=0.1)
    model = _wrap_lora(cfg, loaded.model)
    before = [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p == 0.1]
    assert use_gap_dropout(model) == len(before) > 0
    gaps = [m for m in model.modules() if isinstance(m, GapDropout)]
    assert len(gaps) == len(before) and all(g.p == 0.1 and g.training for g in gaps)
    assert not [m for m in model.modules() if isinstance(m, nn.Dropout) and m.p > 0]


def test_auto_trains_over_a_bf16_base_only_on_a_cpu_with_bf16_hardware(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert training_dtype("auto", "cpu") == "auto"  # conftest: this CPU has no bf16
    monkeypatch.setattr(loading, "cpu_computes_bf16", lambda: True)
    assert training_dtype("auto", "cpu") == "bfloat16"
    assert training_dtype("float32", "cpu") == "float32"  # what the user asks for
    assert training_dtype("auto", "cuda") == "auto"  # loading picks bf16 there already


def test_lora_weights_stay_fp32_over_a_bf16_base(tiny_model_dir: Path) -> None:
    """The optimizer steps fp32 weights, as on a GPU: only the frozen base is bf16."""
    loaded = loading.load_model(str(tiny_model_dir), device="cpu", dtype="bfloat16", training=True)
    model = _wrap_lora(FinetuneConfig(repo=".", out="unused"), loaded.model)
    trained = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    assert trained and all(p.dtype == torch.float32 for p in trained)
    assert all(p.dtype == torch.bfloat16 for p in frozen)
