"""finetune end to end on a tiny model: files, loss, weights, the server contract, resume."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from finetune import train as train_module
from finetune.config import FinetuneConfig
from finetune.train import Interrupted, run
from lsp_server.errors import CodetailorError
from tests.fixtures.repo import SECRETS

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {
    "seq_len": 64,
    "batch_size": 2,
    "lr": 1e-2,
    "max_steps": 8,
    "eval_every": 4,
    "eval_blocks": 4,
    "patience": 0,
    "match_samples": 2,
    "match_max_tokens": 4,
    "checkpoint_every": 4,
}


def small_config(repo: Path, out: Path, model: Path, **overrides: Any) -> FinetuneConfig:
    values = SMALL | {"repo": str(repo), "out": str(out), "model": str(model)} | overrides
    return FinetuneConfig.from_dict(values)


@pytest.fixture(scope="module")
def trained(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One training run shared by the tests below, with every tokenized text recorded."""
    out = tmp_path_factory.mktemp("adapters") / "tiny-lora"
    seen: list[list[int]] = []
    real_tokenize = train_module.tokenize

    def recording_tokenize(tokenizer: Any, texts: Any, eos_id: int) -> list[list[int]]:
        ids = real_tokenize(tokenizer, texts, eos_id)
        seen.extend(ids)
        return ids

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(train_module, "tokenize", recording_tokenize)
        summary = run(small_config(fixture_repo, out, tiny_model_dir), progress=False)
    return {"out": out, "summary": summary, "token_ids": seen}


def test_writes_exactly_the_adapter_files(trained: dict[str, Any]) -> None:
    out: Path = trained["out"]
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        "codetailor.json",
        "finetune.yaml",
    ]
    assert not out.with_name(out.name + ".partial").exists()  # checkpoints are cleaned up


def test_codetailor_json_records_base_format_repo_data_and_evaluation(
    trained: dict[str, Any], tiny_model_dir: Path, fixture_repo: Path
) -> None:
    from lsp_server.completion.prompt import FORMATS
    from lsp_server.model.adapter_meta import SCHEMA_VERSION, read_meta

    meta = json.loads((trained["out"] / "codetailor.json").read_text())
    assert meta["schema_version"] == SCHEMA_VERSION
    # Written through the module the server reads it with, at the format's current version.
    recorded = read_meta(trained["out"])
    assert (
        recorded is not None
        and recorded.to_json() == (trained["out"] / "codetailor.json").read_text()
    )
    assert recorded.prompt_format_version == FORMATS["prefix-only"].version
    assert meta["base_model"]["name"] == str(tiny_model_dir.resolve())
    assert len(meta["base_model"]["fingerprint"]) == 16
    assert meta["prompt_format"] == "prefix-only" and meta["prompt_format_version"] == 1
    assert meta["repository"]["path"] == str(fixture_repo.resolve())
    assert len(meta["repository"]["commit"]) == 40
    assert meta["created"].startswith("20")
    assert meta["data"]["redactions"]["password"] == 1
    assert meta["data"]["train_files"] > 0 and meta["data"]["heldout_files"] > 0
    before, after = meta["evaluation"]["before"], meta["evaluation"]["after"]
    assert {"heldout_loss", "next_line_exact_match"} <= set(before) & set(after)
    assert meta["training"]["steps"] == 8


def test_loss_is_finite_and_falls_on_a_repetitive_corpus(trained: dict[str, Any]) -> None:
    s = trained["summary"]
    assert 0 < s["heldout_loss_after"] < s["heldout_loss_before"] - 0.5
    assert s["tokens_per_second"] > 0 and s["steps"] == 8


def test_planted_secrets_never_reach_the_tokens(
    trained: dict[str, Any], tiny_model_dir: Path
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = "\n".join(tokenizer.decode(ids) for ids in trained["token_ids"])
    assert "<PASSWORD>" in text and "pkg/settings.py" in text  # the file was tokenized
    for secret in SECRETS.values():
        assert secret not in text
    for f in trained["out"].iterdir():
        data = f.read_bytes()
        assert all(s.encode() not in data for s in SECRETS.values())


def test_save_load_round_trip_gives_identical_weights(
    trained: dict[str, Any], tiny_model_dir: Path, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel, get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    saved = load_file(trained["out"] / "adapter_model.safetensors")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, str(trained["out"]))
    loaded = get_peft_model_state_dict(model)
    assert saved.keys() == loaded.keys() and len(saved) > 0
    assert all(torch.equal(saved[k], loaded[k]) for k in saved)
    assert any(float(v.abs().sum()) > 0 for k, v in saved.items() if "lora_B" in k)  # trained
    model.save_pretrained(tmp_path / "again")
    again = load_file(tmp_path / "again" / "adapter_model.safetensors")
    assert all(torch.equal(saved[k], again[k]) for k in saved)


def test_base_plus_adapter_equals_the_merged_model(
    trained: dict[str, Any], tiny_model_dir: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from lsp_server.model.loading import load_model

    ids = torch.tensor([[5, 17, 42, 99, 7, 3, 250, 11]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    plain = base(ids).logits
    unmerged = PeftModel.from_pretrained(base, str(trained["out"])).eval()
    merged = load_model(str(tiny_model_dir), adapter=trained["out"], device="cpu").model
    with torch.no_grad():
        a, b = unmerged(ids).logits, merged(ids).logits
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, plain, atol=1e-3)  # the adapter changes the model


def test_server_loads_the_adapter_and_refuses_it_for_another_base(
    trained: dict[str, Any], tiny_model_dir: Path, tiny_fim_model_dir: Path
) -> None:
    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import choose_format

    loaded = load_model(str(tiny_model_dir), adapter=trained["out"], device="cpu")
    assert loaded.adapter is not None and loaded.adapter.prompt_format == "prefix-only"
    assert choose_format(loaded).name == "prefix-only"
    with pytest.raises(CodetailorError) as err:
        load_model(str(tiny_fim_model_dir), adapter=trained["out"], device="cpu")
    assert f"--model {tiny_model_dir.resolve()}" in str(err.value)


def test_fim_model_trains_with_its_fim_format(
    fixture_repo: Path, tiny_fim_model_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "fim-lora"
    summary = run(
        small_config(fixture_repo, out, tiny_fim_model_dir, max_steps=2, fim_rate=1.0),
        progress=False,
    )
    assert summary is not None and summary["prompt_format"] == "starcoder"
    assert json.loads((out / "codetailor.json").read_text())["prompt_format"] == "starcoder"


def _weights(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(out / "adapter_model.safetensors")


def test_resume_after_interrupts_matches_an_uninterrupted_run(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    settings = {"max_steps": 6, "checkpoint_every": 2, "eval_every": 3, "match_samples": 0}
    reference = tmp_path / "reference"
    run(small_config(fixture_repo, reference, tiny_model_dir, **settings), progress=False)

    out = tmp_path / "resumed"
    cfg = small_config(fixture_repo, out, tiny_model_dir, **settings)
    real_bar = train_module._progress_bar
    events: dict[int, str] = {}

    def bar_with_events(total: int, initial: int, enabled: bool) -> Any:
        bar = real_bar(total, initial, enabled=False)
        update = bar.update
        done = [initial]  # a disabled tqdm does not count

        def update_and_act(n: int = 1) -> Any:
            result = update(n)
            done[0] += n
            action = events.pop(done[0], None)
            if action == "sigint":
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: stop after this step, checkpointed
            elif action == "crash":
                raise RuntimeError("killed")  # like kill -9: only the last checkpoint survives
            return result

        bar.update = update_and_act
        return bar

    monkeypatch.setattr(train_module, "_progress_bar", bar_with_events)
    events[2] = "sigint"  # shown after step 2, seen by the stop check after step 3
    with pytest.raises(Interrupted, match="step 3 of 6"):
        run(cfg, progress=False)
    assert not out.exists()
    events[5] = "crash"  # resumes at 3, checkpoints at 4, dies in step 5
    with pytest.raises(RuntimeError, match="killed"):
        run(cfg, resume=True, progress=False)
    assert not out.exists()
    with pytest.raises(CodetailorError, match="unfinished run .step 4.*--resume"):
        run(cfg, progress=False)
    summary = run(cfg, resume=True, progress=False)
    assert summary is not None and summary["steps"] == 6
    meta = json.loads((out / "codetailor.json").read_text())
    assert meta["training"]["steps"] == 6
    expected, got = _weights(reference), _weights(out)
    assert all(torch.allclose(expected[k], got[k], atol=1e-6) for k in expected)


def test_resume_refuses_changed_settings(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "lora"
    cfg = small_config(fixture_repo, out, tiny_model_dir, max_steps=2, match_samples=0)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(train_module, "save_adapter", crash)
    with pytest.raises(RuntimeError):
        run(cfg, progress=False)
    changed = small_config(
        fixture_repo, out, tiny_model_dir, max_steps=2, match_samples=0, lora_r=4
    )
    with pytest.raises(CodetailorError, match=r"lora_r \(16 -> 4\)"):
        run(changed, resume=True, progress=False)


def test_early_stop_keeps_the_best_weights(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Held-out losses in the order they are measured: the base model, after steps 1, 2
    # and 3 (two evaluations without improvement: stop), then the final weights.
    losses = iter([3.0, 2.0, 2.5, 2.6, 2.7])
    monkeypatch.setattr(train_module, "heldout_loss", lambda *args, **kwargs: next(losses))
    out = tmp_path / "lora"
    settings = {"eval_every": 1, "patience": 2, "match_samples": 0, "max_steps": 8}
    summary = run(small_config(fixture_repo, out, tiny_model_dir, **settings), progress=False)
    assert summary is not None and summary["stopped_early"] and summary["steps"] == 3
    assert summary["heldout_loss_before"] == 3.0 and summary["heldout_loss_after"] == 2.0
    meta = json.loads((out / "codetailor.json").read_text())
    assert meta["evaluation"]["after"]["restored_best_from_step"] == 1
    assert [h["heldout_loss"] for h in meta["evaluation"]["history"]] == [2.0, 2.5, 2.6]
    assert next(losses, None) is None  # every measurement was taken
