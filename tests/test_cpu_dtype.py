"""`--dtype auto` on the CPU: bf16 where the CPU computes it natively, fp32 elsewhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lsp_server.model import loading
from lsp_server.model.loading import load_model, pick_device

# The real check, taken before conftest pins it to False for every test.
CPU_COMPUTES_BF16 = loading.cpu_computes_bf16


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CPU with AMX-BF16 or AVX512-BF16, whatever this machine has."""
    monkeypatch.setattr(loading, "cpu_computes_bf16", lambda: True)


def test_auto_is_fp32_on_a_cpu_without_bf16() -> None:
    assert pick_device("cpu", "auto") == ("cpu", "float32")
    assert pick_device("auto", "auto") == ("cpu", "float32")  # no GPU in CI


@pytest.mark.usefixtures("bf16_cpu")
def test_auto_is_bf16_on_a_cpu_that_computes_it_but_training_keeps_fp32() -> None:
    assert pick_device("cpu", "auto") == ("cpu", "bfloat16")
    assert pick_device("cpu", "auto", training=True) == ("cpu", "float32")
    # What the user asks for is what they get.
    assert pick_device("cpu", "float32") == ("cpu", "float32")
    assert pick_device("cpu", "int8") == ("cpu", "int8")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        ({"amx_bf16": True, "avx512_bf16": False}, True),
        ({"amx_bf16": False, "avx512_bf16": True}, True),
        # AVX-512 alone: torch's mkldnn check says yes, but bf16 would be emulated.
        ({"avx512_f": True, "avx512_bw": True, "amx_bf16": False, "avx512_bf16": False}, False),
        ({}, False),  # another architecture: no such flags
    ],
)
def test_the_capability_check_reads_the_cpu_flags(
    monkeypatch: pytest.MonkeyPatch, flags: dict[str, bool], expected: bool
) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: flags)
    assert CPU_COMPUTES_BF16() is expected


def test_a_failing_capability_probe_means_fp32(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    def broken() -> dict[str, bool]:
        raise RuntimeError("cpuinfo failed")

    monkeypatch.setattr(torch.cpu, "get_capabilities", broken)
    assert CPU_COMPUTES_BF16() is False
    monkeypatch.delattr(torch.cpu, "get_capabilities")
    assert CPU_COMPUTES_BF16() is False


@pytest.mark.usefixtures("bf16_cpu")
def test_tiny_model_runs_end_to_end_in_bf16(tiny_model_dir: Path) -> None:
    import torch

    from lsp_server.model.factory import completer_over

    loaded = load_model(str(tiny_model_dir))
    assert (loaded.device, loaded.dtype) == ("cpu", "bfloat16")
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}
    # Same base as in fp32, so adapters trained on either fit both.
    assert loaded.fingerprint == load_model(str(tiny_model_dir), dtype="float32").fingerprint
    completer = completer_over(loaded)
    text = "import json\nimport os\n\n\ndef load(path):\n    with open(path) as f:\n"
    first = completer.complete(text, len(text), max_tokens=12)
    assert first.generation.generated_tokens > 0
    cache = completer.engine.cache._entries[-1].cache  # type: ignore[attr-defined]
    assert cache.layers[0].keys.dtype == torch.bfloat16  # the growing KV cache keeps bf16
    # Text typed on reuses the bf16 cache, and drafting verifies against it.
    more = text + "        data = json.load(f)\n        return data\n"
    again = completer.complete(more, len(more), max_tokens=12)
    assert again.generation.cached_tokens > 0
    assert again.generation.forwards >= 1


@pytest.mark.usefixtures("bf16_cpu")
def test_a_converted_gguf_cache_loads_in_bf16_without_reconverting(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    import torch

    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not a real GGUF: parsing it would fail")
    shutil.copytree(tiny_model_dir, loading.converted_dir(gguf))  # the fp32 cache
    loaded = load_model(str(gguf))
    assert loaded.dtype == "bfloat16"
    assert next(loaded.model.parameters()).dtype == torch.bfloat16


@pytest.mark.usefixtures("bf16_cpu")
def test_auto_is_int4_for_weights_stored_in_4_bits() -> None:
    from lsp_server.model import int4

    expected = "int4" if int4.kernel_available() else "bfloat16"
    assert pick_device("cpu", "auto", q4_weights=True) == ("cpu", expected)
    assert pick_device("cpu", "auto", q4_weights=True, training=True) == ("cpu", "float32")
    assert pick_device("cpu", "bfloat16", q4_weights=True) == ("cpu", "bfloat16")


def test_auto_stays_fp32_for_4_bit_weights_on_a_cpu_without_bf16() -> None:
    assert pick_device("cpu", "auto", q4_weights=True) == ("cpu", "float32")


def test_whether_a_gguf_is_q4_1_is_read_once(tmp_path: Path) -> None:
    """The default model's file is Q4_1 throughout its blocks; the answer is kept in the
    converted folder, so the file (seconds to read) is not read again."""
    gguf = loading.resolve_model(None).path
    assert gguf is not None
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / "codetailor-source.json").write_text('{"gguf": "x"}')
    assert loading.gguf_is_q4_1(gguf, converted) is True
    assert '"q4_1": true' in (converted / "codetailor-source.json").read_text()
    assert loading.gguf_is_q4_1(tmp_path / "missing.gguf", converted) is True  # from the record
    assert loading.gguf_is_q4_1(tmp_path / "missing.gguf", tmp_path) is False  # unreadable
