"""`--dtype int4`: 4-bit group-quantized linear layers on the CPU, adapters unmerged on top."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from lsp_server.errors import CodetailorError
from lsp_server.model import int4
from lsp_server.model.factory import completer_over, load_completers
from lsp_server.model.loading import load_model, pick_device
from lsp_server.session.settings import DTYPES
from lsp_server.spec import AdapterRef, ModelSpec
from tests.fixtures.adapters import make_adapter
from tests.fixtures.int4 import write_q4_model

pytestmark = pytest.mark.skipif(not int4.kernel_available(), reason="torch without int4 kernels")


def q4_1_weight(out_features: int, in_features: int, seed: int = 0) -> torch.Tensor:
    """A weight as llama.cpp's Q4_1 stores it: per group of 32, d * q + m, each group's
    levels spanning 0..15 (the quantizer maps a group's minimum to 0, its maximum to 15)."""
    g = torch.Generator().manual_seed(seed)
    groups = in_features // int4.GROUP
    levels = torch.randint(0, 16, (out_features, groups, int4.GROUP), generator=g)
    levels[..., 0], levels[..., 1] = 0, 15
    d = torch.rand(out_features, groups, 1, generator=g) * 0.05 + 0.001
    m = torch.randn(out_features, groups, 1, generator=g) * 0.1
    return (levels * d + m).reshape(out_features, in_features)


def test_q4_1_weights_quantize_back_exactly() -> None:
    weight = q4_1_weight(64, 128)
    levels, scales_and_zeros = int4.quantize_groups(weight)
    assert levels.min() == 0 and levels.max() == 15
    assert torch.allclose(int4.dequantize(levels, scales_and_zeros), weight, atol=1e-6)


def test_constant_group_is_exact() -> None:
    weight = torch.full((16, 32), 0.25)
    levels, scales_and_zeros = int4.quantize_groups(weight)
    assert torch.equal(int4.dequantize(levels, scales_and_zeros), weight)


@pytest.mark.parametrize("rows", [1, 3, int4.ROWS, int4.ROWS + 1, 40])
def test_layer_multiplies_like_its_weights(rows: int) -> None:
    """Narrow inputs through the 4-bit kernel, wide ones through the float weight: both
    compute x @ W.T for the Q4_1 weight W, within bf16's rounding."""
    linear = nn.Linear(128, 64, bias=True)
    with torch.no_grad():
        linear.weight.copy_(q4_1_weight(64, 128))
    layer = int4.Int4Linear(linear.to(torch.bfloat16))
    x = torch.randn(2, rows, 128, dtype=torch.bfloat16)
    expected = x.float() @ q4_1_weight(64, 128).T + linear.bias.float()
    got = layer(x)
    assert got.shape == (2, rows, 64) and got.dtype == torch.bfloat16
    assert torch.allclose(got.float(), expected, atol=0.05, rtol=0.02)


def test_quantize_replaces_linear_layers_but_the_output_projection(tiny_model_dir: Path) -> None:
    model = load_model(str(tiny_model_dir), dtype="bfloat16").model
    linear = [n for n, m in model.named_modules() if type(m) is nn.Linear]
    replaced = int4.quantize_int4(model)
    assert replaced == len(linear) - 1
    assert type(model.lm_head) in (nn.Linear, int4.PackedLinear)  # bf16, packed where it can
    assert all(type(m) is not nn.Linear for n, m in model.named_modules() if n != "lm_head")


@pytest.mark.parametrize("rows", [1, int4.ROWS, 30])
def test_packed_output_projection_computes_the_same_products(rows: int) -> None:
    linear = nn.Linear(64, 400, bias=False).to(torch.bfloat16)
    packed = int4.PackedLinear.wrap(linear)
    x = torch.randn(1, rows, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(packed(x), linear(x))


def test_int4_is_a_cpu_dtype(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "int4" in DTYPES
    assert pick_device("cpu", "int4") == ("cpu", "int4")
    with pytest.raises(CodetailorError, match="CPU only"):
        pick_device("mps", "int4")
    monkeypatch.setattr(int4, "kernel_available", lambda: False)
    with pytest.raises(CodetailorError, match="torch 2.6"):
        pick_device("cpu", "int4")


def test_int4_model_completes_close_to_bf16(tiny_model_dir: Path) -> None:
    bf16 = load_model(str(tiny_model_dir), dtype="bfloat16")
    q4 = load_model(str(tiny_model_dir), dtype="int4")
    assert q4.dtype == "int4" and q4.fingerprint == bf16.fingerprint  # adapters still fit
    completion = completer_over(q4).complete("def add(a, b):\n    return", 24, max_tokens=4)
    assert completion.generation.generated_tokens > 0
    ids = torch.tensor([q4.tokenizer.encode("import json\nimport os\n")])
    with torch.no_grad():
        a, b = bf16.model(ids).logits.float(), q4.model(ids).logits.float()
    # Random weights round to 4 bits here; the next test has weights that do not.
    assert nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0) > 0.95


@pytest.fixture(scope="module")
def q4_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with its linear layers' weights rounded to 4-bit groups (but the
    output projection's), as the default model's GGUF stores them."""
    return write_q4_model(tiny_model_dir, tmp_path_factory.mktemp("q4-model"))


IDS = torch.tensor([[5, 17, 33, 2, 80, 41, 7, 9]])


def logits(model_dir: Path, dtype: str, adapter: str | None = None) -> torch.Tensor:
    loaded = load_model(str(model_dir), dtype=dtype, adapter=adapter)
    with torch.no_grad():
        return loaded.model(IDS).logits.float()


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal up to bf16 rounding: every position's logits point the same way."""
    cosine = nn.functional.cosine_similarity(a, b, dim=-1)
    return bool((cosine > 0.999).all())


def test_4_bit_weights_lose_nothing_more(q4_model_dir: Path) -> None:
    """A model whose weights already are 4-bit groups computes the same logits in int4 as
    in bf16, to bf16's rounding."""
    before, after = logits(q4_model_dir, "bfloat16"), logits(q4_model_dir, "int4")
    assert same(before, after) and torch.equal(before.argmax(-1), after.argmax(-1))


def adapter_for(tiny_model_dir: Path, out: Path) -> str:
    base = load_model(str(tiny_model_dir))
    meta = {
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "prompt_format": "prefix-only",
    }
    return str(make_adapter(tiny_model_dir, out, meta))


def test_adapter_stays_unmerged_on_4_bit_weights(tmp_path: Path, q4_model_dir: Path) -> None:
    """int4 with an adapter (unmerged, in float) computes what bf16 with the adapter merged
    does, and the adapter changes the output."""
    adapter = adapter_for(q4_model_dir, tmp_path / "adapter")
    with_adapter = logits(q4_model_dir, "int4", adapter)
    assert (with_adapter - logits(q4_model_dir, "int4")).abs().max() > 0.1
    assert same(with_adapter, logits(q4_model_dir, "bfloat16", adapter))


def test_server_keeps_one_adapter_unmerged_on_int4(tmp_path: Path, tiny_model_dir: Path) -> None:
    adapter = adapter_for(tiny_model_dir, tmp_path / "adapter")
    spec = ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="int4")
    loaded = load_completers(spec, [AdapterRef(str(adapter))])
    assert loaded.mode == "unmerged"
    assert loaded.resident is not None and loaded.resident.merged is None
    text = "def main():\n    total = 0\n"
    completion = loaded.completer.complete(text, len(text), max_tokens=4)
    assert completion.generation.generated_tokens > 0
