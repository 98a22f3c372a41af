"""LoRA fine-tuning on one repository, top to bottom.

config -> seed -> data -> model -> LoRA wrap -> evaluate the base -> train
with periodic held-out loss, early stop and checkpoints -> evaluate -> save.

Runs as one process or under `accelerate launch` (data parallel over
processes; FSDP when accelerate is configured for it). Every process builds the
same data and walks the same global order of blocks, each taking its own
slice of every step, so the order depends on the step alone and a resumed run
continues exactly where the checkpoint left off.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
import warnings
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finetune import checkpoint
from finetune.adapter import (
    check_out,
    disk_error,
    publish,
    repository_info,
    save_adapter,
    work_dir,
)
from finetune.config import FinetuneConfig, dump_yaml
from finetune.data.examples import documents, pack, spread, tokenize
from finetune.evaluate import heldout_loss, next_line_exact_match, next_line_samples, to_batch
from finetune.schedule import BlockOrder, StopFlag, lr_schedule
from lsp_server.errors import CodetailorError
from lsp_server.repo.corpus import collect
from lsp_server.repo.files import SOURCE_EXTENSIONS, split_files

log = logging.getLogger("codetailor.finetune")

# Config keys a resumed run may change: how long it trains, and how it reports.
RESUMABLE_CHANGES = {"max_steps", "epochs", "eval_every", "checkpoint_every", "patience"}


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, step: int, total: int, work: Path) -> None:
        super().__init__(
            f"interrupted at step {step} of {total}; checkpoint saved in {work}; "
            "run the same command with --resume to continue"
        )


def run(
    cfg: FinetuneConfig, *, resume: bool = False, progress: bool = True
) -> dict[str, Any] | None:
    """Train an adapter as `cfg` says and publish it at `cfg.out`.

    Returns the summary on the main process and None on the others.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed
    from peft import (
        LoraConfig,
        get_peft_model,
        get_peft_model_state_dict,
        set_peft_model_state_dict,
    )

    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import choose_format

    # --- config, output folder, seed -------------------------------------------------------
    cfg.validate()
    repo, out = Path(cfg.repo).expanduser(), Path(cfg.out).expanduser().absolute()
    check_out(out)
    work = work_dir(out)
    found = checkpoint.find(work)
    if found and not resume:
        raise CodetailorError(
            f"{work} holds an unfinished run (step {checkpoint.read_state(found).step}); pass "
            "--resume to continue it, or delete that folder to start over"
        )
    if found:
        _check_same_run(checkpoint.read_state(found).config, cfg)
    elif resume:
        print(f"codetailor: nothing to resume in {work}; starting a new run", file=sys.stderr)
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    main, world = accelerator.is_main_process, accelerator.num_processes
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if main:
        print("codetailor finetune: resolved config", file=sys.stderr)
        for key, value in cfg.to_dict().items():
            print(f"  {key}: {value}", file=sys.stderr)
    set_seed(cfg.seed)

    # --- data: files, split, examples ------------------------------------------------------
    extensions = frozenset(e if e.startswith(".") else "." + e for e in cfg.extensions)
    corpus = collect(
        repo,
        max_file_bytes=cfg.max_file_bytes,
        extensions=extensions or SOURCE_EXTENSIONS,
        near_duplicate_threshold=cfg.near_duplicate_threshold,
    )
    if not corpus.files:
        skipped = ", ".join(f"{n} {why}" for why, n in sorted(corpus.skipped.items())) or "none"
        raise CodetailorError(
            f"{repo} has no source files to train on ({corpus.listed} files listed; skipped: "
            f"{skipped}); point at a repository with code, or widen `extensions`"
        )
    _, held_paths = split_files([f.path for f in corpus.files], cfg.holdout)
    if cfg.holdout > 0 and not held_paths:
        raise CodetailorError(
            f"{repo} has a single source file, so none can be held out; pass --holdout 0 "
            "to train without evaluation"
        )
    held_set = set(held_paths)
    train_files = [f for f in corpus.files if f.path not in held_set]
    held_files = [f for f in corpus.files if f.path in held_set]

    log.info("data: %s", corpus.stats())
    device = str(accelerator.device) if cfg.device == "auto" else cfg.device
    # FSDP flattens frozen and LoRA weights together, so both stay float32 and FSDP's
    # mixed precision computes in bf16; otherwise the base loads in bf16 on a GPU.
    dtype = "float32" if fsdp and cfg.dtype == "auto" else cfg.dtype
    loaded = load_model(
        cfg.model, device=device, dtype=dtype, trust_remote_code=cfg.trust_remote_code
    )
    fmt = choose_format(loaded, cfg.prompt_format)
    tokenizer = loaded.tokenizer
    eos = tokenizer.eos_token_id
    if eos is None:
        raise CodetailorError(f"model '{cfg.model}' has a tokenizer without an EOS token")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    tokenizer.model_max_length = 1 << 30  # whole files are tokenized, then packed
    train_texts = documents(
        fmt,
        [(f.path, f.text) for f in train_files],
        seq_len=cfg.seq_len,
        seed=cfg.seed,
        header=cfg.path_header,
        fim_rate=cfg.fim_rate,
        spm_rate=cfg.spm_rate,
    )
    train = pack(tokenize(tokenizer, train_texts, eos), cfg.seq_len, pad)
    held_texts = documents(
        fmt, [(f.path, f.text) for f in held_files], seq_len=cfg.seq_len, header=cfg.path_header
    )
    held = pack(tokenize(tokenizer, held_texts, eos), cfg.seq_len, pad)
    eval_blocks = spread(held, cfg.eval_blocks)
    line_samples = next_line_samples(held_files, cfg.match_samples, cfg.seed)
    per_step = cfg.batch_size * cfg.grad_accum * world
    total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(train.ids) / per_step))

    log.info(
        "%d training and %d held-out sequences; %d steps",
        len(train.ids),
        len(held.ids),
        total_steps,
    )

    # --- model: LoRA on every linear layer but the output ----------------------------------
    base = loaded.model
    base.config.use_cache = False
    if cfg.gradient_checkpointing:
        # transformers 5.2x renamed gradient_checkpointing_enable; accept both spellings.
        enable = getattr(base, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
    targets = "all-linear" if cfg.target_modules == ["all-linear"] else list(cfg.target_modules)
    lora_config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # PEFT still asks for transformers' deprecated spelling
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        model = get_peft_model(base, lora_config)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_schedule(total_steps, cfg.warmup_fraction, cfg.min_lr_fraction)
    )
    # The scheduler stays unprepared: accelerate would step it once per process.
    model, optimizer = accelerator.prepare(model, optimizer)
    peft_model = accelerator.unwrap_model(model)
    eval_model = model if fsdp else peft_model  # FSDP needs every rank in each forward

    def lora_weights() -> dict[str, Any]:
        full = accelerator.get_state_dict(model) if fsdp else None
        weights = get_peft_model_state_dict(peft_model, state_dict=full)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in weights.items()}

    def measure_loss() -> float | None:
        return heldout_loss(
            eval_model, eval_blocks, cfg.batch_size, accelerator.device, progress=progress and main
        )

    def measure_lines() -> dict[str, Any]:
        result: dict[str, Any] = {"match_samples": len(line_samples)}
        if main and not fsdp and line_samples:
            result["next_line_exact_match"] = next_line_exact_match(
                peft_model,
                tokenizer,
                fmt,
                line_samples,
                window_tokens=cfg.match_window_tokens,
                max_tokens=cfg.match_max_tokens,
                progress=progress,
            )
        accelerator.wait_for_everyone()
        return result

    # --- resume, or measure the base model (LoRA starts as a no-op) ------------------------
    state = checkpoint.TrainState(data_fingerprint=train.fingerprint(), config=cfg.to_dict())
    best: dict[str, Any] | None = None
    if found:
        state, saved_lora, best = checkpoint.load(found, optimizer, scheduler)
        if state.data_fingerprint != train.fingerprint():
            raise CodetailorError(
                f"the training data changed since the checkpoint in {work} (files edited, or "
                "another tokenizer); delete that folder to start over"
            )
        set_peft_model_state_dict(peft_model, saved_lora)
        state.config = cfg.to_dict()
        if main:
            print(f"resuming at step {state.step} of {total_steps}", file=sys.stderr)
    else:
        state.before = {"heldout_loss": measure_loss()} | measure_lines()
        log.info("base model: %s", state.before)
        state.best_loss = state.before["heldout_loss"]
        best = lora_weights() if state.best_loss is not None else None

    # --- train -----------------------------------------------------------------------------
    def save_checkpoint() -> None:
        weights = lora_weights()
        if main:
            try:
                checkpoint.save(work, state, weights, best, optimizer, scheduler)
            except OSError as exc:
                raise disk_error(exc, work) from exc
        accelerator.wait_for_everyone()

    order = BlockOrder(len(train.ids), cfg.seed)
    stop = StopFlag()
    bar = _progress_bar(total_steps, state.step, enabled=progress and main)
    model.train()
    with stop.installed():
        while state.step < total_steps and not state.stopped_early:
            started = time.monotonic()
            step_loss, step_tokens = 0.0, 0
            for micro in range(cfg.grad_accum):
                first = (state.step * cfg.grad_accum + micro) * world + accelerator.process_index
                rows = order.rows(first * cfg.batch_size, cfg.batch_size)
                ids, mask, labels = to_batch(train, rows)
                last = micro == cfg.grad_accum - 1
                # Gradients are averaged across processes only on the last micro-batch.
                with nullcontext() if last else accelerator.no_sync(model):
                    loss = model(
                        input_ids=ids.to(accelerator.device),
                        attention_mask=mask.to(accelerator.device),
                        labels=labels.to(accelerator.device),
                    ).loss
                    accelerator.backward(loss / cfg.grad_accum)
                step_loss += loss.item() / cfg.grad_accum
                step_tokens += int(mask.sum())
            if cfg.max_grad_norm:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            state.tokens += step_tokens * world
            state.train_seconds += time.monotonic() - started
            postfix = {
                "loss": f"{step_loss:.3f}",
                "tok/s": f"{state.tokens / state.train_seconds:.0f}",
            }

            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < total_steps:
                loss_now = measure_loss()
                state.history.append(
                    {"step": state.step, "train_loss": step_loss, "heldout_loss": loss_now}
                )
                if loss_now is not None and (state.best_loss is None or loss_now < state.best_loss):
                    state.best_loss, state.best_step = loss_now, state.step
                    state.evals_without_improvement = 0
                    best = lora_weights()
                else:
                    state.evals_without_improvement += 1
                    state.stopped_early = 0 < cfg.patience <= state.evals_without_improvement
                postfix["heldout"] = f"{loss_now:.3f}" if loss_now is not None else "-"
                model.train()
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
            if state.step % cfg.checkpoint_every == 0 or state.stopped_early:
                save_checkpoint()
            if stop.requested(accelerator):
                save_checkpoint()
                bar.close()
                raise Interrupted(state.step, total_steps, work)
    bar.close()
    save_checkpoint()  # so an interrupt while saving below loses no training

    # --- keep the best weights, measure again, save ----------------------------------------
    after: dict[str, Any] = {"heldout_loss": measure_loss()}
    if best is not None and state.best_loss is not None and after["heldout_loss"] is not None:
        if state.best_loss < after["heldout_loss"]:
            set_peft_model_state_dict(peft_model, best)
            after = {"heldout_loss": state.best_loss, "restored_best_from_step": state.best_step}
        else:
            state.best_loss, state.best_step = after["heldout_loss"], state.step
    after |= measure_lines()

    summary = {
        "adapter": str(out),
        "base_model": loaded.name,
        "prompt_format": fmt.name,
        "steps": state.step,
        "total_steps": total_steps,
        "stopped_early": state.stopped_early,
        "train_tokens_seen": state.tokens,
        "train_seconds": round(state.train_seconds, 1),
        "tokens_per_second": round(state.tokens / state.train_seconds, 1)
        if state.train_seconds
        else None,
        "heldout_loss_before": state.before.get("heldout_loss"),
        "heldout_loss_after": after.get("heldout_loss"),
        "next_line_exact_match_before": state.before.get("next_line_exact_match"),
        "next_line_exact_match_after": after.get("next_line_exact_match"),
        "match_samples": len(line_samples),
    }
    data_stats = corpus.stats() | {
        "train_files": len(train_files),
        "heldout_files": len(held_files),
        "train_tokens": train.tokens,
        "heldout_tokens": held.tokens,
        "train_sequences": len(train.ids),
        "heldout_sequences_evaluated": len(eval_blocks.ids),
    }
    full = accelerator.get_state_dict(model) if fsdp else None
    if main:
        meta = _adapter_meta(cfg, loaded, fmt, repo, state, after, data_stats, summary)
        staging = save_adapter(peft_model, work, meta, dump_yaml(cfg), state_dict=full)
        try:
            publish(staging, out)
        except OSError as exc:
            raise disk_error(exc, out) from exc
        shutil.rmtree(work, ignore_errors=True)
    accelerator.wait_for_everyone()
    return summary | {"data": data_stats} if main else None


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        desc="finetune",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


def _check_same_run(saved: dict[str, Any], cfg: FinetuneConfig) -> None:
    changed = sorted(
        k for k, v in cfg.to_dict().items() if k not in RESUMABLE_CHANGES and saved.get(k) != v
    )
    if changed:
        details = ", ".join(f"{k} ({saved.get(k)!r} -> {getattr(cfg, k)!r})" for k in changed)
        raise CodetailorError(
            f"--resume with different settings: {details}; rerun with the original settings, "
            "or drop --resume and delete the .partial folder to start over"
        )


def _adapter_meta(
    cfg: FinetuneConfig,
    loaded: Any,
    fmt: Any,
    repo: Path,
    state: checkpoint.TrainState,
    after: dict[str, Any],
    data_stats: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """What `codetailor.json` records: enough to use, trust and reproduce the adapter."""
    from lsp_server import __version__

    source = loaded.source
    # For a local model, the path is what a later `--model` needs.
    name = str(source.path) if source.kind in ("directory", "gguf") else source.name
    return {
        "codetailor_version": __version__,
        "base_model": {"name": name, "fingerprint": loaded.fingerprint, "source": source.kind},
        "prompt_format": fmt.name,
        "prompt_format_version": fmt.version,
        "repository": repository_info(repo),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training": {
            "steps": state.step,
            "total_steps": summary["total_steps"],
            "stopped_early": state.stopped_early,
            "best_step": state.best_step,
            "tokens_seen": state.tokens,
            "seconds": summary["train_seconds"],
            "tokens_per_second": summary["tokens_per_second"],
            "device": loaded.device,
            "dtype": loaded.dtype,
            "lora": {
                "r": cfg.lora_r,
                "alpha": cfg.lora_alpha,
                "dropout": cfg.lora_dropout,
                "target_modules": cfg.target_modules,
            },
        },
        "data": data_stats,
        "evaluation": {"before": state.before, "after": after, "history": state.history},
    }
