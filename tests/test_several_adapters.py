"""Several adapters on one resident base model (tiny model): each answers as a server with
that one adapter would, merged when only one is in use, swapped in place, one KV prefix
cache per adapter; int8 keeps one merged adapter and says so."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import torch

from lsp_server.model.factory import INT8_NOTE, Loaded, completer_over, load_completers, resync
from lsp_server.model.host import ModelHost
from lsp_server.model.loading import load_model
from lsp_server.spec import AdapterRef, Holding, ModelSpec, folder
from tests.fixtures.adapters import make_adapter

PROMPT = "def main():\n    total = 0\n    for item in items:\n"


def quiet(kind: str, message: str, percentage: int | None) -> None:
    pass


def spec(tiny_model_dir: Path, dtype: str = "float32") -> ModelSpec:
    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype=dtype)


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> dict[str, str]:
    """Two adapters for the tiny model, with different weights (their folders)."""
    base = load_model(str(tiny_model_dir))
    meta = {
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "prompt_format": "prefix-only",
    }
    out = tmp_path_factory.mktemp("adapters")
    return {
        name: str(make_adapter(tiny_model_dir, out / name, meta, seed=seed))
        for name, seed in (("one", 0), ("two", 1))
    }


def tokens(completer: Any, text: str = PROMPT) -> list[int]:
    """What the completer's engine generates for `text` (greedy: the same weights, the
    same tokens)."""
    ids = completer.prompt_ids(text, len(text))
    return completer.engine.generate(ids, max_new_tokens=12).tokens


@pytest.fixture(scope="module")
def alone(tiny_model_dir: Path, adapters: dict[str, str]) -> dict[AdapterRef | None, list[int]]:
    """What a server with one adapter (merged, the plain loading path), or none, generates."""
    answers: dict[AdapterRef | None, list[int]] = {}
    for key in (None, AdapterRef(adapters["one"]), AdapterRef(adapters["two"])):
        loaded = load_model(str(tiny_model_dir), adapter=folder(key))
        answers[key] = tokens(completer_over(loaded, prompt_format="prefix-only"))
    return answers


def refs(adapters: dict[str, str]) -> tuple[AdapterRef, AdapterRef]:
    return AdapterRef(adapters["one"]), AdapterRef(adapters["two"])


def loaded_with(tiny_model_dir: Path, *wanted: AdapterRef | None) -> Loaded:
    return load_completers(spec(tiny_model_dir), wanted, report=quiet)


def test_each_adapter_answers_as_a_server_with_that_one_adapter(
    tiny_model_dir: Path, adapters: dict[str, str], alone: dict[AdapterRef | None, list[int]]
) -> None:
    one, two = refs(adapters)
    assert len({tuple(answer) for answer in alone.values()}) == 3  # three different answers
    loaded = loaded_with(tiny_model_dir, one, two, None)
    assert loaded.mode == "unmerged"
    for key in (one, two, None, two, one):  # in turns: each request selects its own
        assert tokens(loaded.completers[key]) == alone[key], key


def test_one_adapter_in_use_is_merged_and_swaps_in_place(
    tiny_model_dir: Path, adapters: dict[str, str], alone: dict[AdapterRef | None, list[int]]
) -> None:
    one, two = refs(adapters)
    loaded = loaded_with(tiny_model_dir, one)
    assert loaded.mode == "merged"
    assert tokens(loaded.completer) == alone[one]
    base = loaded.model.model
    both = resync(loaded, spec(tiny_model_dir), [one, two], quiet)
    assert both.mode == "unmerged" and both.model.model is base  # the same weights in memory
    assert both.completers[one] is loaded.completers[one]  # kept, with its cache
    assert tokens(both.completers[two]) == alone[two]
    assert tokens(both.completers[one]) == alone[one]
    swapped = resync(both, spec(tiny_model_dir), [two], quiet)
    assert swapped.mode == "merged"
    assert tokens(swapped.completer) == alone[two]
    # a request that still holds the dropped adapter's completer gets the new one's answer
    assert tokens(both.completers[one]) == alone[two]
    bare = resync(swapped, spec(tiny_model_dir), [None], quiet)
    assert bare.mode == "base" and not hasattr(base, "peft_config")
    assert tokens(bare.completer) == alone[None]  # the base weights are back
    plain = load_model(str(tiny_model_dir)).model.state_dict()
    for name, weight in base.state_dict().items():  # float32: to within rounding
        assert torch.allclose(weight, plain[name], rtol=0, atol=1e-6), name


def test_an_adapter_updated_in_its_folder_is_loaded_again(
    tiny_model_dir: Path,
    adapters: dict[str, str],
    alone: dict[AdapterRef | None, list[int]],
    tmp_path: Path,
) -> None:
    """`finetune` updating the registered adapter in place (an incremental run): the
    registry names the new weights anew, and the swap loads them, merged or not."""
    import shutil

    updated = tmp_path / "repo-lora"
    shutil.copytree(adapters["one"], updated)
    before = AdapterRef(str(updated), "repo-11111111")
    loaded = loaded_with(tiny_model_dir, before)
    assert tokens(loaded.completer) == alone[AdapterRef(adapters["one"])]
    staging = tmp_path / "staging"  # what finetune publishes: a new folder swapped in
    shutil.copytree(adapters["two"], staging)
    shutil.rmtree(updated)
    staging.rename(updated)
    after = AdapterRef(str(updated), "repo-22222222")
    merged = resync(loaded, spec(tiny_model_dir), [after], quiet)
    assert (
        merged.mode == "merged" and tokens(merged.completer) == alone[AdapterRef(adapters["two"])]
    )
    beside = resync(merged, spec(tiny_model_dir), [after, None], quiet)
    assert tokens(beside.completers[after]) == alone[AdapterRef(adapters["two"])]
    assert tokens(beside.completers[None]) == alone[None]


def test_no_kv_entry_serves_another_adapter(
    tiny_model_dir: Path, adapters: dict[str, str], alone: dict[AdapterRef | None, list[int]]
) -> None:
    one, two = refs(adapters)
    loaded = loaded_with(tiny_model_dir, one, two)
    first, second = loaded.completers[one], loaded.completers[two]
    tokens(first)
    assert len(first.engine.cache) == 1 and len(second.engine.cache) == 0
    ids = second.prompt_ids(PROMPT, len(PROMPT))
    generation = second.engine.generate(ids, max_new_tokens=12)
    assert generation.cached_tokens == 0 and generation.tokens == alone[two]
    again = first.engine.generate(first.prompt_ids(PROMPT, len(PROMPT)), max_new_tokens=12)
    assert again.cached_tokens > 0 and again.tokens == alone[one]


def test_the_host_swaps_adapters_without_reloading_the_base(
    tiny_model_dir: Path, adapters: dict[str, str], alone: dict[AdapterRef | None, list[int]]
) -> None:
    one, two = refs(adapters)
    done = threading.Event()
    host = ModelHost(lambda kind, *_: done.set() if kind in ("end", "failed") else None)
    host.load(spec(tiny_model_dir), [one])
    assert done.wait(60) and host.state == "ready"
    base = host.loaded.model.model if host.loaded else None
    done.clear()
    host.swap(spec(tiny_model_dir), [one, two])
    assert done.wait(60) and host.swaps == 1 and host.error is None
    assert host.loaded is not None and host.loaded.model.model is base
    assert host.answers_for(two) == (two, "loaded unmerged, selected per request")
    completer = host.completer_for(two)
    assert completer is not None
    assert host.submit(lambda: tokens(completer)).result(60) == alone[two]
    assert host.status()["adapters"]["mode"] == "unmerged"


def test_a_folder_whose_adapter_fails_is_answered_by_the_default_and_says_why(
    tiny_model_dir: Path, adapters: dict[str, str], tmp_path: Path
) -> None:
    one = AdapterRef(adapters["one"])
    broken = tmp_path / "broken"
    broken.mkdir()
    loaded = loaded_with(tiny_model_dir, one, AdapterRef(str(broken)))
    failed = {folder(key): why for key, why in loaded.failed.items()}
    assert str(broken) in failed and "adapter_config.json" in failed[str(broken)]
    assert loaded.mode == "merged"  # the one that loaded is the only one in use


def test_int8_holds_one_merged_adapter_and_says_so(
    tiny_model_dir: Path, adapters: dict[str, str]
) -> None:
    one, two = refs(adapters)
    int8 = spec(tiny_model_dir, "int8")
    host = ModelHost(quiet)
    host.loaded, host.held = load_completers(int8, [one, two]), Holding(int8, (one, two))
    assert host.loaded.mode == "int8" and list(host.loaded.completers) == [one]
    assert host.answers_for(two) == (one, INT8_NOTE)
    assert host.completer_for(two) is host.loaded.completer


def test_the_remote_engine_asks_for_each_folders_adapter_by_name(
    tiny_model_dir: Path,
    adapters: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lsp_server.model import registry

    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path))  # a registry of its own
    entry = registry.register_adapter(tiny_model_dir, adapters["one"], name="repo-one")
    remote = ModelSpec(model=str(tiny_model_dir), engine="http://127.0.0.1:9")
    wanted = [None, registry.resolve_adapter(entry.path), registry.resolve_adapter(adapters["two"])]
    host = ModelHost(quiet)
    host.loaded = load_completers(remote, wanted)
    host.held = Holding(remote, tuple(wanted))
    sent = {folder(key): c.engine.model for key, c in host.loaded.completers.items()}
    # the base model by the name it was given; a registered adapter by its registered name;
    # an unregistered folder by the folder's name
    assert sent == {None: str(tiny_model_dir), entry.path: "repo-one", adapters["two"]: "two"}
    assert host.answers_for(wanted[1])[1] == "its name sent as `model` to the remote engine"


def test_in_bfloat16_the_base_weights_come_back_exactly(
    tiny_model_dir: Path, adapters: dict[str, str]
) -> None:
    one, two = refs(adapters)
    bf16 = spec(tiny_model_dir, "bfloat16")
    loaded = load_completers(bf16, [one])
    assert loaded.mode == "merged" and loaded.resident is not None
    plain = load_model(str(tiny_model_dir), dtype="bfloat16").model.state_dict()
    for wanted in ([two], [one, two], [one], [None]):  # merge, unmerge, merge, drop them all
        loaded = resync(loaded, bf16, wanted, quiet)
    for name, weight in loaded.model.model.state_dict().items():
        assert torch.equal(weight, plain[name]), name


def test_a_swap_to_an_adapter_that_cannot_load_leaves_the_current_one_answering(
    tiny_model_dir: Path,
    adapters: dict[str, str],
    alone: dict[AdapterRef | None, list[int]],
    tmp_path: Path,
) -> None:
    from lsp_server.errors import CodetailorError

    one = AdapterRef(adapters["one"])
    loaded = loaded_with(tiny_model_dir, one)
    broken = AdapterRef(str(tmp_path))  # a folder with no adapter in it
    with pytest.raises(CodetailorError, match="adapter_config.json"):
        resync(loaded, spec(tiny_model_dir), [broken], quiet)
    assert tokens(loaded.completer) == alone[one]
