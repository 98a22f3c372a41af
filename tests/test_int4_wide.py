"""`bench int4`: the designs without the int4 model's bf16 copies compute what the served
one does, leave the model as it was, and the bench reports every arm."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lsp_server.measure import int4_wide
from lsp_server.model import int4
from tests.fixtures.int4 import write_q4_model

pytestmark = pytest.mark.skipif(not int4.kernel_available(), reason="torch without int4 kernels")


def layers(*shapes: tuple[int, int]) -> list[int4.Int4Linear]:
    """4-bit layers of these (out, in) shapes whose float weights already are 4-bit groups."""
    torch.manual_seed(0)
    made = []
    for out, inner in shapes:
        linear = nn.Linear(inner, out, bias=True)
        with torch.no_grad():
            linear.weight.copy_(int4.dequantize(*int4.quantize_groups(linear.weight)))
        made.append(int4.Int4Linear(linear.to(torch.bfloat16)))
    return made


def test_dequantized_weight_is_the_kernels() -> None:
    """Expanded from the nibbles into the shared buffer, each layer's weight is the one
    the 4-bit kernel multiplies by, to bf16's rounding: narrow inputs through the kernel
    and through the expanded weight give the same products."""
    held = layers((64, 128), (128, 64), (32, 64))
    dequantizer = int4_wide.Dequantizer(held)
    for layer in held:
        levels, scales_and_zeros = int4.quantize_groups(layer.weight)
        expected = int4.dequantize(levels, scales_and_zeros).t()
        weight = dequantizer.transposed_weight(layer).float()
        assert weight.shape == (layer.in_features, layer.out_features)
        assert torch.allclose(weight, expected, rtol=1e-2, atol=1e-3)
        x = torch.randn(4, layer.in_features, dtype=torch.bfloat16)
        through_kernel = layer.narrow(x).float()
        through_weight = (x @ dequantizer.transposed_weight(layer)).float() + layer.bias.float()
        assert torch.allclose(through_kernel, through_weight, rtol=0.02, atol=0.02)


@pytest.mark.parametrize("arm", int4_wide.PREFILL_ARMS)
def test_each_arm_multiplies_wide_inputs_and_then_leaves(arm: str) -> None:
    held = layers((64, 128))
    layer = held[0]
    x = torch.randn(1, int4.ROWS + 5, 128, dtype=torch.bfloat16)
    with torch.no_grad():
        served = layer(x).float()
        with pytest.raises(KeyError), int4_wide.prefill_arm(held, arm, int4_wide.Dequantizer(held)):
            assert torch.allclose(layer(x).float(), served, rtol=0.05, atol=0.05)
            raise KeyError("leaving the block by an error restores the layers too")
    assert "forward" not in layer.__dict__
    assert torch.equal(layer(x), served.to(torch.bfloat16))


def test_bench_reports_every_arm_on_a_4_bit_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    """On weights that are 4-bit groups already, dropping the bf16 copies changes no
    greedy token; the figures are there for each arm and length."""
    model = write_q4_model(tiny_model_dir, tmp_path / "q4")
    threads = torch.get_num_threads()
    report = int4_wide.run(str(model), [5, 300], rounds=1, steps=2, threads=threads + 1)
    assert report["threads"] == threads + 1 and torch.get_num_threads() == threads
    prefill = report["prefill"]
    assert prefill["chunk_tokens"] == int4_wide.prefill_chunk()
    for n in (5, 300):
        arms = prefill[f"{n}_tokens"]
        assert set(arms) == set(int4_wide.PREFILL_ARMS) and arms["float"]["ratio"] == 1.0
        assert all(arm["same_next_token"] and arm["cpu_ms"] > 0 for arm in arms.values())
    assert set(prefill["held_mb"]) == set(int4_wide.PREFILL_ARMS)
    decode = report["decode"]
    if decode is not None:  # the output projection is packed where oneDNN takes it
        assert decode["plain"]["same_token"] and decode["packed"]["ratio"] == 1.0
    steps = report["steps"]
    assert steps["prompt_tokens"] == 300 and steps["draft_tokens"] == int4.DRAFT_TOKENS
    for width in range(1, int4.ROWS + 1):
        step = steps[f"{width}_tokens"]
        assert step["same_logits"] and step["lean_cpu_ms"] > 0 and step["forward_cpu_ms"] > 0
