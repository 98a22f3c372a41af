"""The packed 4-bit weights kept on disk (int4_cache.py): written once, read back with the
same greedy output, packed again when the weights, torch or the file change, and a home
that cannot be written serves without them."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest
import torch

from lsp_server.model import int4, int4_cache, loading
from lsp_server.model.factory import completer_over
from lsp_server.model.loading import LoadedModel, load_model

pytestmark = pytest.mark.skipif(not int4.kernel_available(), reason="torch without int4 kernels")

IDS = torch.tensor([[5, 17, 33, 2, 80, 41, 7, 9, 12, 3, 60, 21]])
TEXT = "import os\n\n\ndef main(path):\n    with open(path"


@pytest.fixture
def model_dir(tmp_path: Path, tiny_model_dir: Path) -> Path:
    """A copy of the tiny model this test may change."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "tiny"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("CODETAILOR_HOME", str(home))
    return home


@pytest.fixture
def packs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the layers packed from their float weights (not read back from a cache)."""
    calls: list[int] = []
    pack = int4.pack

    def counting(weight: torch.Tensor, group: int = int4.GROUP) -> int4.Packed:
        calls.append(1)
        return pack(weight, group)

    monkeypatch.setattr(int4, "pack", counting)
    return calls


def load(model_dir: Path) -> LoadedModel:
    return load_model(str(model_dir), dtype="int4")


def kept(model_dir: Path) -> Path:
    source = loading.resolve_model(str(model_dir))
    return int4_cache.cache_file(source, model_dir, loading.cache_home())


def outputs(loaded: LoadedModel) -> tuple[torch.Tensor, str]:
    """The logits of a fixed input and a greedy completion (wide and narrow inputs both)."""
    with torch.no_grad():
        logits = loaded.model(IDS).logits.float()
    completion = completer_over(loaded, reuse=False).complete(TEXT, len(TEXT), max_tokens=8)
    return logits, completion.text


def same_outputs(a: LoadedModel, b: LoadedModel) -> bool:
    (logits_a, text_a), (logits_b, text_b) = outputs(a), outputs(b)
    return torch.equal(logits_a, logits_b) and text_a == text_b


@pytest.mark.usefixtures("home")
def test_packed_weights_are_kept_and_read_back_with_the_same_output(
    model_dir: Path, packs: list[int]
) -> None:
    first = load(model_dir)
    layers = len(packs)
    assert layers > 0 and kept(model_dir).is_file()
    stamp = kept(model_dir).stat().st_mtime_ns
    second = load(model_dir)
    assert len(packs) == layers  # nothing packed again: read back
    assert kept(model_dir).stat().st_mtime_ns == stamp
    assert same_outputs(first, second)
    assert second.fingerprint == first.fingerprint


def test_a_gguf_models_packed_weights_sit_beside_its_converted_weights(
    tmp_path: Path, tiny_model_dir: Path, packs: list[int]
) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"not a real GGUF: the converted folder below stands for it")
    converted = loading.converted_dir(gguf)
    shutil.copytree(tiny_model_dir, converted)
    load_model(str(gguf), dtype="int4")
    assert (converted / int4_cache.FILE).is_file()
    layers = len(packs)
    load_model(str(gguf), dtype="int4")
    assert len(packs) == layers


@pytest.mark.usefixtures("home")
def test_changed_weights_are_packed_again(model_dir: Path, packs: list[int]) -> None:
    load(model_dir)
    layers = len(packs)
    from safetensors.torch import load_file, save_file

    weights = model_dir / "model.safetensors"
    state = load_file(str(weights))
    name = next(k for k in state if k.endswith("mlp.up_proj.weight"))
    state[name] = state[name] * 2
    save_file(state, str(weights), metadata={"format": "pt"})
    changed = load(model_dir)
    assert len(packs) == 2 * layers  # every layer packed again from the new weights
    kept(model_dir).unlink()
    assert same_outputs(changed, load(model_dir))  # what packing the new weights gives


@pytest.mark.usefixtures("home")
def test_another_torch_packs_again(
    model_dir: Path, packs: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    load(model_dir)
    layers = len(packs)
    monkeypatch.setattr(torch, "__version__", "99.0.0")  # its packed layout may differ
    load(model_dir)
    assert len(packs) == 2 * layers
    load(model_dir)
    assert len(packs) == 2 * layers  # and kept for that torch


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


def garble_header(path: Path) -> None:
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all" + path.read_bytes()[24:])


@pytest.mark.usefixtures("home")
@pytest.mark.parametrize("damage", [flip_last_byte, truncate, garble_header])
def test_a_damaged_cache_is_packed_again_with_one_line(
    damage, model_dir: Path, packs: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    first = load(model_dir)
    layers = len(packs)
    damage(kept(model_dir))
    with caplog.at_level(logging.INFO, logger="codetailor.models"):
        again = load(model_dir)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "damaged" in warnings[0].getMessage()
    assert "\n" not in warnings[0].getMessage() and warnings[0].exc_info is None
    assert len(packs) == 2 * layers
    assert same_outputs(first, again)  # never a wrong model
    load(model_dir)
    assert len(packs) == 2 * layers  # the rewritten cache is read back


def test_a_home_that_cannot_be_written_serves_without_a_cache(
    tmp_path: Path,
    model_dir: Path,
    packs: list[int],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    not_a_folder = tmp_path / "home-is-a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("CODETAILOR_HOME", str(not_a_folder))
    with caplog.at_level(logging.INFO, logger="codetailor.models"):
        loaded = load(model_dir)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot keep" in warnings[0].getMessage()
    assert warnings[0].exc_info is None
    assert len(packs) > 0 and loaded.dtype == "int4"
    assert not any(p.name.endswith(".partial") for p in tmp_path.rglob("*"))
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    assert same_outputs(loaded, load(model_dir))


@pytest.mark.usefixtures("home")
def test_no_partial_file_is_left_when_writing_fails(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(src: os.PathLike[str], dst: os.PathLike[str]) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(int4_cache.os, "replace", full_disk)
    load(model_dir)
    folder = kept(model_dir).parent
    assert list(folder.iterdir()) == []


def test_a_conversion_parses_each_gguf_header_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers parses the file for its tokenizer, config and weights: within a
    conversion the first parse answers the others, and gguf is itself again afterwards."""
    gguf = pytest.importorskip("gguf")
    made: list[str] = []

    class Reader:
        def __init__(self, path: str, mode: str = "r") -> None:
            made.append(str(path))

    monkeypatch.setattr(gguf, "GGUFReader", Reader)
    original_map = gguf.get_tensor_name_map
    with loading._gguf_read_once():
        assert gguf.GGUFReader("a.gguf") is gguf.GGUFReader("a.gguf")
        gguf.GGUFReader("b.gguf")
    assert made == ["a.gguf", "b.gguf"]
    assert gguf.GGUFReader is Reader and gguf.get_tensor_name_map is original_map
