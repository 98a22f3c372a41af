"""Preference tuning of a repository's adapter on its feedback log, top to bottom.

`run_preference` is five steps, defined below in the order they run:
- `setup`: check the config, find the adapter to tune and its metadata;
- `prepare_data`: read the feedback log, load the base model, rebuild each
  suggestion's prompt, split the log by place into training and held-out
  feedback, and turn each part into DPO pairs and KTO labels
  (finetune/data/preferences.py);
- `fit`: put the adapter on the model, trainable; measure it on the repository's
  held-out files and the held-out feedback; tune it (finetune/preference/loop.py);
  measure it again;
- `gate` (finetune/preference/gate.py): keep the tuned adapter or say why not;
- `finish`: replace the adapter when the gate passed (and write the candidate
  when asked), and return the summary.

The adapter at `cfg.adapter` keeps serving while it is tuned, and stays as it was
unless the tuned one passes the gate; then it is swapped whole, the way `finetune`
publishes a new adapter (finetune/adapter.py).
"""

from __future__ import annotations

import logging
import shutil
import warnings
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finetune.config import PreferenceConfig, print_resolved
from finetune.data.preferences import PreferenceData, preference_data, split_by_place
from finetune.preference.anchor import Anchor
from finetune.preference.gate import gate
from finetune.preference.loop import train
from finetune.preference.records import load_records, prompt_builder
from finetune.preference.scoring import Scorer, preference_accuracy
from lsp_server.completion.prompt import PromptFormat
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import AdapterMeta, read_meta, write_meta

log = logging.getLogger("codetailor.finetune.preference")


def run_preference(cfg: PreferenceConfig, *, progress: bool = True) -> dict[str, Any]:
    """Tune the adapter at `cfg.adapter` on the feedback log; replace it only if the gate
    passes. Returns the summary (kept or not, and why)."""
    job = setup(cfg, progress=progress)
    data = prepare_data(job)
    tuned = fit(job, data)
    keep, reasons = gate(tuned.before, tuned.after, cfg.loss_tolerance)
    return finish(job, data, tuned, keep, reasons)


# --- 1. setup: config, the adapter to tune ---------------------------------------------------


def setup(cfg: PreferenceConfig, *, progress: bool) -> Job:
    """Check everything that can be checked before any work."""
    cfg.validate()
    adapter = Path(cfg.adapter).expanduser().absolute()
    meta = read_meta(adapter) if adapter.is_dir() else None
    if meta is None or meta.base_model is None:
        raise CodetailorError(
            f"{adapter} holds no codetailor adapter; train one first: "
            f"codetailor finetune {cfg.repo} --out {cfg.adapter}"
        )
    print_resolved(cfg, "codetailor finetune --feedback")
    base_model = meta.base_model.name
    return Job(cfg=cfg, adapter=adapter, meta=meta, base_model=base_model, progress=progress)


# --- 2. data: the log, the model, the rebuilt prompts, pairs and labels ----------------------


def prepare_data(job: Job) -> Data:
    """The training and held-out feedback as preference data, with the model it is for."""
    from lsp_server.completion.prompt import get_format
    from lsp_server.model.factory import window_tokens
    from lsp_server.model.loading import load_model

    cfg = job.cfg
    records = load_records(cfg)
    loaded = load_model(job.base_model, device=cfg.device, dtype=cfg.dtype, training=True)
    fmt = get_format(job.meta.prompt_format or "prefix-only")
    build = prompt_builder(loaded.tokenizer, fmt, window_tokens(loaded.device))
    train_records, held_records = split_by_place(records, cfg.heldout_feedback, cfg.seed)
    train_data = preference_data(train_records, build)
    held_data = preference_data(held_records, build)
    log.info("preference data: train %s, held out %s", train_data.counts(), held_data.counts())
    if not train_data.pairs and not any(not e.desirable for e in train_data.unpaired):
        raise CodetailorError("the feedback log has no rejected suggestions to learn from")
    if not any(e.desirable for e in train_data.examples):
        raise CodetailorError("the feedback log has no kept suggestions to learn from")
    return Data(loaded=loaded, fmt=fmt, train=train_data, held=held_data)


# --- 3. fit: the trainable adapter, its figures before, the loop, its figures after ----------


def fit(job: Job, data: Data) -> Tuned:
    """Measure the adapter, tune it on the training feedback, and measure it again."""
    from finetune.repo_eval import RepoEval

    cfg, loaded = job.cfg, data.loaded
    model = trainable_adapter(loaded.model, job.adapter, cfg.seed)
    scorer = Scorer(model, loaded.tokenizer, cfg.max_prompt_tokens, loaded.device, cfg.reference)
    repo_eval = RepoEval.for_adapter(Path(cfg.repo), job.meta, job.adapter, cfg.repo_eval, cfg.seed)

    def measure() -> dict[str, Any]:
        figures = repo_eval.measure(model, loaded.tokenizer, data.fmt, loaded.device, job.progress)
        return figures | {"preference_accuracy": preference_accuracy(scorer, data.held)}

    anchor = Anchor.for_repository(repo_eval, loaded.tokenizer, data.fmt, cfg)
    before = measure()
    losses = train(model, scorer, data.train, cfg, anchor)
    after = measure()
    return Tuned(model=model, before=before, after=after, losses=losses)


def trainable_adapter(base: Any, adapter: Path, seed: int) -> Any:
    """The adapter on the base model, unmerged and trainable (its LoRA weights only)."""
    import torch
    from peft import PeftModel

    torch.manual_seed(seed)
    with warnings.catch_warnings():  # PEFT still asks for transformers' deprecated spelling
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
    base.config.use_cache = False
    return model


# --- 4. gate: finetune/preference/gate.py, on the figures before and after ----------------


# --- 5. finish: the summary, the adapter replaced (or not), the candidate --------------------


def finish(job: Job, data: Data, tuned: Tuned, keep: bool, reasons: list[str]) -> dict[str, Any]:
    """Replace the adapter if the gate kept the tuned one; write the candidate if asked."""
    losses = tuned.losses
    summary = {
        "adapter": str(job.adapter),
        "kept": keep,
        "reasons": reasons,
        "before": tuned.before,
        "after": tuned.after,
        "train": data.train.counts(),
        "heldout": data.held.counts(),
        "steps": len(losses),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }
    if keep:
        replace_adapter(tuned.model, job.adapter, job.meta, summary, job.cfg)
    if job.cfg.candidate:
        replace_adapter(tuned.model, Path(job.cfg.candidate).absolute(), job.meta, summary, job.cfg)
    return summary


def replace_adapter(
    model: Any, adapter: Path, meta: AdapterMeta, summary: dict[str, Any], cfg: PreferenceConfig
) -> None:
    """Write the tuned adapter beside the one at `adapter`, then swap it in
    (finetune/adapter.py); the recipe is copied from the original adapter, and the
    metadata gains this tuning (its config and figures) in `preference_tuning`."""
    from finetune.adapter import disk_error, publish, work_dir

    work = work_dir(adapter)
    staging = work / "adapter"
    shutil.rmtree(staging, ignore_errors=True)
    history = list(meta.preference_tuning)
    history.append(
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": cfg.to_dict(),
        }
        | {k: summary[k] for k in ("before", "after", "train", "heldout", "steps")}
    )
    try:
        model.save_pretrained(str(staging), safe_serialization=True)
        (staging / "README.md").unlink(missing_ok=True)
        write_meta(staging, replace(meta, preference_tuning=history))
        recipe = Path(cfg.adapter).expanduser().absolute() / "finetune.yaml"
        if recipe.is_file():
            shutil.copy2(recipe, staging / "finetune.yaml")
        publish(staging, adapter)
    except OSError as exc:
        raise disk_error(exc, adapter) from exc
    shutil.rmtree(work, ignore_errors=True)


# --- what the steps hand each other ---------------------------------------------------------


@dataclass
class Job:
    """What setup settled: the config, and the adapter to tune with its metadata."""

    cfg: PreferenceConfig
    adapter: Path  # absolute
    meta: AdapterMeta
    base_model: str  # the model the adapter was trained on, as `load_model` takes it
    progress: bool


@dataclass
class Data:
    """The model, its prompt format, and the feedback turned into preference data."""

    loaded: Any  # lsp_server.model.loading.LoadedModel
    fmt: PromptFormat
    train: PreferenceData
    held: PreferenceData


@dataclass
class Tuned:
    """The tuned model, its figures before and after, and the loss of each step."""

    model: Any
    before: dict[str, Any]
    after: dict[str, Any]
    losses: list[float]
