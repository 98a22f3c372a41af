"""LoRA fine-tuning on one repository, top to bottom.

`run` is four steps, defined below in the order they run:
- `setup`: check the config and the output folder, find a checkpoint to resume,
  start accelerate, seed;
- `prepare_data`: collect and split the repository's files, load the model (its
  tokenizer shapes the data), build, tokenize and pack the examples: FIM from the
  files, and next edits from the git history before the temporal cut
  (`history_examples`, finetune/data/next_edits.py), learned on their target only;
- `fit`: wrap the model in LoRA, measure the base model (or restore the
  checkpoint), then train with periodic held-out loss, early stop and checkpoints;
- `finish`: keep the best weights, measure again, write the adapter and publish it.

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
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finetune import checkpoint, incremental
from finetune.adapter import (
    check_out,
    disk_error,
    publish,
    repository_info,
    save_adapter,
    work_dir,
)
from finetune.budget import (
    EPOCHS,
    MAX_STEPS,
    PREPARE_SHARE,
    Clock,
    Deadline,
    StepPlan,
    budget_seconds,
)
from finetune.config import FinetuneConfig, dump_yaml, print_resolved
from finetune.console import Quiet, data_line, say
from finetune.data import next_edits
from finetune.data.examples import (
    Blocks,
    documents,
    pack,
    pack_examples,
    spread,
    tokenize,
    tokenize_fim,
)
from finetune.data.next_edits import NextEditSet
from finetune.evaluate import (
    LineSample,
    heldout_loss,
    next_line_exact_match,
    next_line_samples,
    to_batch,
)
from finetune.incremental import Since
from finetune.init_adapter import (
    FROM_ZERO,
    check_start,
    general_start,
    load_start,
    read_start,
    started_from,
)
from finetune.schedule import BlockOrder, StopFlag, lr_schedule
from lsp_server.completion.next_edit_prompt import NextEditFormat, next_edit_format
from lsp_server.completion.prompt import PromptFormat
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import COMPLETION, NEXT_EDIT, AdapterMeta, BaseModelRef
from lsp_server.repo.corpus import Corpus, SourceFile, collect
from lsp_server.repo.diffs import Commit
from lsp_server.repo.files import SOURCE_EXTENSIONS, split_files
from lsp_server.repo.history import History

log = logging.getLogger("codetailor.finetune")

# Config keys a resumed run may change: how long it trains, and how it reports. (A time
# budget given again keeps the plan the run made: `StepPlan.restore`.)
RESUMABLE_CHANGES = {
    "max_steps",
    "epochs",
    "eval_every",
    "checkpoint_every",
    "patience",
    "time_budget_minutes",
}


class Interrupted(Exception):
    """Training stopped on a signal after saving a checkpoint."""

    def __init__(self, step: int, total: int, work: Path) -> None:
        super().__init__(
            f"interrupted at step {step} of {total}; checkpoint saved in {work}; "
            "run the same command with --resume to continue"
        )


def run(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    clock: Clock = time.monotonic,
) -> dict[str, Any] | None:
    """Train an adapter as `cfg` says and publish it at `cfg.out`, within its time budget
    (`clock` tells the time; tests give a fake one).

    Returns the summary on the main process and None on the others. Raises
    `NothingNew` where an incremental run finds nothing new to train on.
    """
    deadline = Deadline(None, clock)  # the budget counts from here; its length needs the device
    job = setup(cfg, resume=resume, progress=progress, deadline=deadline)
    data = prepare_data(job)
    if job.main:
        minutes = job.deadline.seconds / 60 if job.deadline.seconds else None
        line = data_line(data.stats(), data.total_steps, cfg.seq_len, minutes)
        say(f"codetailor finetune: {line}")
    trainer = fit(job, data)
    return finish(job, data, trainer)


# --- 1. setup: config, output folder, checkpoint, processes, seed --------------------------


def setup(cfg: FinetuneConfig, *, resume: bool, progress: bool, deadline: Deadline) -> Job:
    """Check everything that can be checked before any work, and start the processes;
    for an incremental run, find what is new (`NothingNew`: nothing is)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, set_seed

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
        say(f"codetailor: nothing to resume in {work}; starting a new run")
    accelerator = Accelerator(cpu=cfg.device == "cpu")
    device = str(accelerator.device) if cfg.device == "auto" else cfg.device
    deadline.seconds = budget_seconds(cfg.time_budget_minutes, device.split(":")[0])
    job = Job(
        cfg=cfg,
        repo=repo,
        out=out,
        work=work,
        resume_from=found,
        accelerator=accelerator,
        fsdp=accelerator.distributed_type == DistributedType.FSDP,
        progress=progress,
        deadline=deadline,
    )
    if job.main and log.isEnabledFor(logging.INFO):  # -v: the whole config, a key a line
        print_resolved(cfg, "codetailor finetune")
    job.since = incremental.find_since(cfg, repo, out, say if job.main else _mute)
    if job.since is not None:
        _check_something_new(cfg, repo, job.since)
    set_seed(cfg.seed)
    return job


def training_dtype(dtype: str, device: str) -> str:
    """The frozen base's dtype for a run on `device`: `dtype`, where `auto` on a CPU with
    bf16 arithmetic in hardware is bf16 (as on a GPU; PEFT keeps the LoRA weights, and so
    the optimizer, in fp32): about 1.5x fp32's tokens/s on SmolLM2 with the same loss
    curve (docs/benchmarks.md). Elsewhere `auto` stays what loading picks for training."""
    from lsp_server.model.loading import cpu_computes_bf16

    if dtype == "auto" and device == "cpu" and cpu_computes_bf16():
        return "bfloat16"
    return dtype


# --- 2. data: files, split, model and tokenizer, examples ---------------------------------


def prepare_data(job: Job) -> Data:
    """The training and held-out sets, tokenized and packed, with the model they are for."""
    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import training_format

    cfg = job.cfg
    read_at = datetime.now(timezone.utc).isoformat()  # what a later incremental run compares
    corpus, train_files, held_files = split_repository(cfg, job.repo)
    log.info("data: %s", corpus.stats())
    device = str(job.accelerator.device) if cfg.device == "auto" else cfg.device
    # FSDP flattens frozen and LoRA weights together, so both stay float32 and FSDP's
    # mixed precision computes in bf16; otherwise the base loads in bf16 on a GPU (and on
    # a CPU with bf16 hardware).
    dtype = "float32" if job.fsdp and cfg.dtype == "auto" else training_dtype(cfg.dtype, device)
    loaded = load_model(
        cfg.model,
        device=device,
        dtype=dtype,
        trust_remote_code=cfg.trust_remote_code,
        training=True,
    )
    general = None if job.since is not None else general_start(cfg)
    fmt = training_format(loaded, cfg.prompt_format or inherited_format(job, general))
    tokenizer = loaded.tokenizer
    if tokenizer.eos_token_id is None:
        raise CodetailorError(f"model '{cfg.model}' has a tokenizer without an EOS token")
    tokenizer.model_max_length = 1 << 30  # whole files are tokenized, then packed
    start = starting_adapter(job, loaded.fingerprint, fmt, general)
    train, learned, through, replayed = training_rows(job, fmt, tokenizer, train_files, loaded)
    held = heldout_sequences(cfg, fmt, tokenizer, held_files)
    per_step = cfg.batch_size * cfg.grad_accum * job.world
    limit = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(train.ids) / per_step))
    plan = StepPlan(
        limit, MAX_STEPS if cfg.max_steps else EPOCHS, job.deadline, eval_every=cfg.eval_every
    )
    log.info("%d training, %d held-out sequences; %d steps", len(train.ids), len(held.ids), limit)
    return Data(
        loaded=loaded,
        fmt=fmt,
        corpus=corpus,
        train_files=train_files,
        held_files=held_files,
        train=train,
        held=held,
        eval_blocks=spread(held, cfg.eval_blocks),
        line_samples=next_line_samples(held_files, cfg.match_samples, cfg.seed),
        total_steps=limit,
        plan=plan,
        next_edits=learned[0] if learned else None,
        next_edit_format=learned[1] if learned else None,
        start=start,
        files_read_at=read_at,
        history_through=through,
        replayed=replayed,
    )


def training_rows(
    job: Job, fmt: PromptFormat, tokenizer: Any, train_files: list[SourceFile], loaded: Any
) -> tuple[Blocks, tuple[NextEditSet, NextEditFormat] | None, str | None, dict[str, Any] | None]:
    """The training rows (FIM from the files, next edits from the history; an incremental
    run's new data and replay), the next-edit examples among them, the newest commit they
    come from, and what an incremental run added and replayed."""
    cfg, since = job.cfg, job.since
    if since is not None:
        train, learned, replayed = incremental_sequences(
            job, fmt, tokenizer, train_files, loaded.device
        )
        through = since.new_commits[-1].sha if since.new_commits else since.history_through
        return train, learned, through, replayed
    train = training_sequences(cfg, fmt, tokenizer, train_files)
    mined = history_examples(job, tokenizer, loaded.device, train.tokens)
    if mined is None:
        return train, None, None, None
    found, layout, through = mined
    train = train + pack_examples(found.pairs, cfg.next_edit_seq_len)
    return train, (found, layout), through, None


def split_repository(
    cfg: FinetuneConfig, repo: Path
) -> tuple[Corpus, list[SourceFile], list[SourceFile]]:
    """The repository's source files, and their training and held-out shares (by path).
    The one definition of the split: preference tuning's gate (finetune/repo_eval.py)
    measures on the same held-out files."""
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
    return corpus, train_files, held_files


def training_sequences(
    cfg: FinetuneConfig, fmt: PromptFormat, tokenizer: Any, train_files: list[SourceFile]
) -> Blocks:
    """The training files as documents packed to `seq_len`, and FIM examples each whole in
    a row (the loss on its middle). Preference tuning's anchor
    (finetune/preference/anchor.py) trains on the same blocks."""
    return _sequences(cfg, fmt, tokenizer, train_files)


def _sequences(
    cfg: FinetuneConfig, fmt: PromptFormat, tokenizer: Any, files: list[SourceFile]
) -> Blocks:
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    texts = documents(
        fmt,
        [(f.path, f.text) for f in files],
        seq_len=cfg.seq_len,
        seed=cfg.seed,
        header=cfg.path_header,
        fim_rate=cfg.fim_rate,
        spm_rate=cfg.spm_rate,
        holes=cfg.fim_holes,
    )
    plain = pack(tokenize(tokenizer, texts.plain, eos), cfg.seq_len, pad)
    if not texts.fim:
        return plain
    # An example longer than a row is left out rather than given a row of its own.
    pairs = [
        pair
        for pair in tokenize_fim(tokenizer, texts.fim, eos)
        if len(pair[0]) + len(pair[1]) <= cfg.seq_len
    ]
    return plain + pack_examples(pairs, cfg.seq_len)


def history_examples(
    job: Job, tokenizer: Any, device: str, fim_tokens: int
) -> tuple[NextEditSet, NextEditFormat, str] | None:
    """The next-edit examples of the commits before the temporal cut (`eval --next-edit`'s
    at the same `holdout`), `next_edit_share` of the training tokens at most, the layout
    they are in and the newest commit read; None where `next_edit` is off or the history
    is too short."""
    from lsp_server.repo.history import mine_split

    cfg = job.cfg
    if not cfg.next_edit:
        return None
    try:
        history, earlier, _ = mine_split(job.repo, cfg.holdout)
    except CodetailorError as exc:
        if job.main:
            say(f"codetailor finetune: completion only, no next edits: {exc}")
        return None
    share = cfg.next_edit_share
    budget = min(cfg.next_edit_max_tokens, round(fim_tokens * share / (1 - share)))
    found = mine_examples(job, tokenizer, device, history, earlier, budget)
    return (*found, earlier[-1].sha) if found else None


def mine_examples(
    job: Job,
    tokenizer: Any,
    device: str,
    history: History,
    commits: list[Commit],
    budget: int,
    desc: str = "mine history",
) -> tuple[NextEditSet, NextEditFormat] | None:
    """The next-edit examples of `commits` (read from the end of the list until `budget`
    tokens, or until the time budget's share for reading history is spent) and their
    layout; None where they give none."""
    from tqdm.auto import tqdm

    from lsp_server.model.next_edit import window_for
    from lsp_server.model.wiring import tokenizer_special_tokens

    cfg = job.cfg
    if not commits or budget <= 0:
        return None
    fmt = next_edit_format(None, tokenizer_special_tokens(tokenizer))
    cpu = cfg.next_edit_window == "cpu" or (cfg.next_edit_window == "auto" and device == "cpu")
    lines, history_tokens = window_for(cpu)
    layout = next_edits.Layout(
        fmt,
        lambda text: list(tokenizer.encode(text, add_special_tokens=False)),
        lines,
        history_tokens,
        cfg.next_edit_seq_len,
    )
    show = job.progress and job.main
    with tqdm(desc=desc, unit="commit", file=Quiet(sys.stderr), disable=not show) as bar:
        found = next_edits.build(
            history,
            commits,
            layout,
            budget=budget,
            partial_rate=cfg.next_edit_partial_rate,
            seed=cfg.seed,
            progress=bar.update,
            stop=job.deadline.share_passed(PREPARE_SHARE),
        )
    if found.commits_read < len(commits) and found.tokens < budget and job.main:
        say(
            f"codetailor finetune: history read for {found.commits_read} of {len(commits)} "
            "commits: the time budget's share for it is spent"
        )
    log.info("next edits: %s", found.stats())
    return (found, fmt) if found.pairs else None


def inherited_format(job: Job, general: tuple[Path, AdapterMeta] | None) -> str | None:
    """The prompt format of the adapter this run starts from (the one it updates, the one
    `init_adapter` names, else the shipped general adapter), so that, unless a format is
    named, its weights go on meaning what they learned; None: no such adapter."""
    cfg, since = job.cfg, job.since
    if since is not None:
        return since.meta.prompt_format
    if cfg.init_adapter and cfg.init_adapter != FROM_ZERO:
        return read_start(Path(cfg.init_adapter).expanduser()).prompt_format
    return general[1].prompt_format if general else None


def starting_adapter(
    job: Job,
    fingerprint: str,
    fmt: PromptFormat,
    general: tuple[Path, AdapterMeta] | None = None,
) -> tuple[Path, AdapterMeta] | None:
    """The adapter the LoRA starts from (the one an incremental run updates, else
    `init_adapter`, else the shipped `general` one), checked against this run
    (`finetune.init_adapter.check_start`); an incremental run that may fall back
    (`incremental: auto`) trains from scratch instead, and a general adapter that does
    not fit (another LoRA shape, a named format) is passed over with one line."""
    cfg, since = job.cfg, job.since
    if since is not None:
        try:
            check_start(since.adapter, since.meta, cfg, fingerprint, fmt)
            return since.adapter, since.meta
        except CodetailorError as exc:
            if cfg.incremental != incremental.AUTO:
                raise
            if job.main:
                say(f"codetailor finetune: training from scratch: {exc}")
            job.since = None
    if cfg.init_adapter == FROM_ZERO:
        return None
    if cfg.init_adapter:
        folder = Path(cfg.init_adapter).expanduser()
        meta = read_start(folder)
        check_start(folder, meta, cfg, fingerprint, fmt)
        return folder, meta
    if general is None:
        return None
    try:
        check_start(*general, cfg, fingerprint, fmt)
    except CodetailorError as exc:
        if job.main:
            say(f"codetailor finetune: from zero, not from the general adapter: {exc}")
        return None
    return general


def incremental_sequences(
    job: Job, fmt: PromptFormat, tokenizer: Any, train_files: list[SourceFile], device: str
) -> tuple[Blocks, tuple[NextEditSet, NextEditFormat] | None, dict[str, Any]]:
    """An incremental run's training rows (`finetune.incremental`): the changed files and
    the new commits' next edits, then the replay sample of the old data; the next-edit
    examples among them; and what was new and replayed."""
    cfg, since = job.cfg, job.since
    assert since is not None
    new_files, old_files = since.split_files(train_files)
    empty = Blocks([], [])
    new_fim = training_sequences(cfg, fmt, tokenizer, new_files) if new_files else empty
    history = since.history
    new_edits = None
    if history is not None:
        budget = cfg.next_edit_max_tokens
        new_edits = mine_examples(job, tokenizer, device, history, since.new_commits, budget)
    new_tokens = new_fim.tokens + (new_edits[0].tokens if new_edits else 0)
    replay = round(new_tokens * cfg.replay_share / (1 - cfg.replay_share))
    edit_share = cfg.next_edit_share if history is not None and since.old_commits else 0.0
    old_fim = training_sequences(cfg, fmt, tokenizer, old_files) if old_files else empty
    fim_rows = incremental.replay_rows(old_fim.lengths, round(replay * (1 - edit_share)), cfg.seed)
    old_edits = None
    if history is not None and edit_share and replay:
        old = incremental.shuffled(since.old_commits, cfg.seed)
        budget = round(replay * edit_share)
        old_edits = mine_examples(job, tokenizer, device, history, old, budget, "replay history")
    train = new_fim + old_fim.pick(fim_rows)
    for found in (new_edits, old_edits):
        if found is not None:
            train = train + pack_examples(found[0].pairs, cfg.next_edit_seq_len)
    learned = new_edits or old_edits
    if new_edits and old_edits:
        learned = (next_edits.combine(new_edits[0], old_edits[0]), new_edits[1])
    replayed = old_fim.pick(fim_rows).tokens + (old_edits[0].tokens if old_edits else 0)
    return (
        train,
        learned,
        since.stats()
        | {
            "changed_train_files": len(new_files),
            "new_tokens": new_tokens,
            "replay_tokens": replayed,
            "replay_share": cfg.replay_share,
        },
    )


def heldout_sequences(
    cfg: FinetuneConfig, fmt: PromptFormat, tokenizer: Any, held_files: list[SourceFile]
) -> Blocks:
    """The held-out files as training makes its examples (documents, and FIM examples at
    the same rate), so the held-out loss measures what is trained."""
    return _sequences(cfg, fmt, tokenizer, held_files)


# --- 3. fit: LoRA, the base model's figures (or the checkpoint), the loop ------------------


def fit(job: Job, data: Data) -> Trainer:
    """Train until the step budget or early stop; checkpoint on the way and at the end.

    A signal stops the loop after the current step, saves a checkpoint and raises
    Interrupted; a resumed run continues from the last checkpoint.
    """
    cfg, plan = job.cfg, data.plan
    trainer = Trainer(job, data)
    trainer.start()
    state = trainer.state
    order = BlockOrder(len(data.train.ids), cfg.seed)
    stop = StopFlag()
    # The bar's total is the plan's, so its ETA is the planned end of training.
    bar = _progress_bar(plan.total, state.step, enabled=job.progress and job.main)
    trainer.model.train()
    with stop.installed():
        while state.step < plan.total and not state.stopped_early:
            step_loss = trainer.step(order)
            # The stop check comes first: nothing (a display, an evaluation) may stand
            # between a signal and the checkpoint that keeps the step just done.
            if stop.requested(job.accelerator):
                trainer.save_checkpoint()
                bar.close()
                raise Interrupted(state.step, plan.total, job.work)
            if _replanned(plan, state.step, job.accelerator):
                trainer.follow_plan()
                bar.total = plan.total
            state.plan = plan.to_dict()
            rate = state.tokens / state.train_seconds
            postfix = {"loss": f"{step_loss:.3f}", "tok/s": f"{rate:.0f}"}
            if cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < plan.total:
                postfix["heldout"] = trainer.evaluate(step_loss)
            if state.step % cfg.checkpoint_every == 0 or state.stopped_early:
                trainer.save_checkpoint()
            bar.set_postfix(postfix, refresh=False)
            bar.update(1)
    bar.close()
    trainer.save_checkpoint()  # so an interrupt while finishing loses no training
    if job.main:
        why = plan.stop_reason(state.step, state.stopped_early).replace("_", " ")
        say(
            f"codetailor finetune: trained {state.step} of {plan.limit} steps (stopped by: "
            f"{why}); measuring the adapter on the held-out files"
        )
    return trainer


# --- 4. finish: best weights, final figures, the adapter folder ----------------------------


def finish(job: Job, data: Data, trainer: Trainer) -> dict[str, Any] | None:
    """Keep the best weights, measure them, then write and publish the adapter folder."""
    from peft import set_peft_model_state_dict

    state = trainer.state
    final_loss = trainer.measure_loss()
    after: dict[str, Any] = {"heldout_loss": final_loss}
    if trainer.best is not None and state.best_loss is not None and final_loss is not None:
        if state.best_loss < final_loss:
            set_peft_model_state_dict(trainer.peft_model, trainer.best)
            after = {"heldout_loss": state.best_loss, "restored_best_from_step": state.best_step}
        else:
            state.best_loss, state.best_step = final_loss, state.step
    after |= trainer.measure_lines()
    summary = _summary(job, data, state, after)
    full = job.accelerator.get_state_dict(trainer.model) if job.fsdp else None
    if job.main:
        meta = _adapter_meta(job, data, state, after, summary)
        staging = save_adapter(
            trainer.peft_model, job.work, meta, dump_yaml(job.cfg), state_dict=full
        )
        try:
            publish(staging, job.out)
        except OSError as exc:
            raise disk_error(exc, job.out) from exc
        shutil.rmtree(job.work, ignore_errors=True)
    job.accelerator.wait_for_everyone()
    return summary | {"data": data.stats()} if job.main else None


# --- what the four steps hand each other ----------------------------------------------------


@dataclass
class Job:
    """What setup settled: the config, where things go, and the processes doing the work."""

    cfg: FinetuneConfig
    repo: Path
    out: Path
    work: Path  # OUT.partial: checkpoints and the adapter being written
    resume_from: Path | None  # the checkpoint folder, when resuming
    accelerator: Any
    fsdp: bool
    progress: bool
    deadline: Deadline = field(default_factory=lambda: Deadline(None))  # the time budget
    since: Since | None = None  # what an incremental run updates, and what is new

    @property
    def main(self) -> bool:
        return bool(self.accelerator.is_main_process)

    @property
    def world(self) -> int:
        return int(self.accelerator.num_processes)


@dataclass
class Data:
    """The model, its prompt format, and the examples built for it."""

    loaded: Any  # lsp_server.model.loading.LoadedModel
    fmt: PromptFormat
    corpus: Corpus
    train_files: list[SourceFile]
    held_files: list[SourceFile]
    train: Blocks
    held: Blocks
    eval_blocks: Blocks  # the fixed held-out subset every loss evaluation reads
    line_samples: list[LineSample]
    total_steps: int  # what the epochs (or max_steps) ask for; `plan.total`: what is run
    next_edits: NextEditSet | None = None  # the examples from history, where learned
    next_edit_format: NextEditFormat | None = None
    # The steps run; left out: `total_steps` with no time budget (set in __post_init__).
    plan: StepPlan = None  # type: ignore[assignment]
    start: tuple[Path, AdapterMeta] | None = None  # the adapter the LoRA starts from
    files_read_at: str | None = None  # when the files were read (ISO 8601, UTC)
    history_through: str | None = None  # the newest commit the next edits came from
    replayed: dict[str, Any] | None = None  # an incremental run's new and replayed data

    def __post_init__(self) -> None:
        if self.plan is None:
            self.plan = StepPlan(self.total_steps, EPOCHS, Deadline(None))

    @property
    def tasks(self) -> list[str]:
        """What the adapter learns (`AdapterMeta.tasks`): what this run trains, and what
        the adapter it starts from had learned."""
        learned = {COMPLETION} | ({NEXT_EDIT} if self.next_edits else set())
        inherited = set(self.start[1].tasks) if self.start else set()
        return [t for t in (COMPLETION, NEXT_EDIT) if t in learned | inherited]

    @property
    def next_edit_layout(self) -> tuple[str | None, int | None]:
        """The next-edit layout (name, version) the adapter has learned: this run's, else
        the start adapter's; (None, None) for none."""
        if self.next_edit_format is not None:
            return self.next_edit_format.name, self.next_edit_format.version
        if self.start is not None and NEXT_EDIT in self.start[1].tasks:
            return self.start[1].next_edit_format, self.start[1].next_edit_format_version
        return None, None

    def stats(self) -> dict[str, Any]:
        """The data statistics `codetailor.json` and the summary report."""
        learned = self.next_edits.stats() if self.next_edits else {}
        return (
            self.corpus.stats()
            | {
                "train_files": len(self.train_files),
                "heldout_files": len(self.held_files),
                "train_tokens": self.train.tokens,
                "train_loss_tokens": self.train.loss_tokens,
                "heldout_tokens": self.held.tokens,
                "train_sequences": len(self.train.ids),
                "heldout_sequences_evaluated": len(self.eval_blocks.ids),
            }
            | learned
            | ({"incremental": self.replayed} if self.replayed else {})
        )


class Trainer:
    """The LoRA-wrapped model, its optimizer and schedule, the loop's counters, and the
    measurements `fit` and `finish` take."""

    def __init__(self, job: Job, data: Data) -> None:
        import torch

        cfg = job.cfg
        self.job, self.data = job, data
        model = _wrap_lora(cfg, data.loaded.model)
        if not next(model.parameters()).is_cuda:
            from finetune.dropout import use_gap_dropout

            use_gap_dropout(model)  # the same masks from ~5% of the random numbers
        if data.start is not None:  # before `prepare`, which may shard the weights
            load_start(model, data.start[0])
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        # The schedule reads the plan, which a time budget makes after the first steps.
        schedule = lr_schedule(lambda: data.plan.total, cfg.warmup_fraction, cfg.min_lr_fraction)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        # The scheduler stays unprepared: accelerate would step it once per process.
        self.model, self.optimizer = job.accelerator.prepare(model, optimizer)
        self.peft_model = job.accelerator.unwrap_model(self.model)
        # FSDP needs every rank in each forward.
        self.eval_model = self.model if job.fsdp else self.peft_model
        self.state = checkpoint.TrainState(
            data_fingerprint=data.train.fingerprint(), config=cfg.to_dict()
        )
        self.best: dict[str, Any] | None = None  # the LoRA weights with the best held-out loss

    def start(self) -> None:
        """Restore the checkpoint, or measure the model as training starts: the base model
        (LoRA starts as a no-op), or the adapter it starts from. The plan learns how long
        the measurements took: the final ones take as long."""
        from peft import set_peft_model_state_dict

        job = self.job
        if job.resume_from is None:
            clock = job.deadline.clock
            began = clock()
            before = self.measure_lines(base=self.data.start is None)
            lines_done = clock()
            self.state.before = {"heldout_loss": self.measure_loss()} | before
            self.data.plan.measured_start(clock() - began, clock() - lines_done)
            log.info("base model: %s", self.state.before)
            self.state.best_loss = self.state.before["heldout_loss"]
            self.best = self.lora_weights() if self.state.best_loss is not None else None
            return
        state, saved_lora, self.best = checkpoint.load(
            job.resume_from, self.optimizer, self.scheduler
        )
        if state.data_fingerprint != self.state.data_fingerprint:
            raise CodetailorError(
                f"the training data changed since the checkpoint in {job.work} (files edited, "
                "or another tokenizer); delete that folder to start over"
            )
        set_peft_model_state_dict(self.peft_model, saved_lora)
        state.config = job.cfg.to_dict()
        self.state = state
        self.data.plan.restore(state.plan)
        if job.main:
            say(f"codetailor finetune: resuming at step {state.step} of {self.data.plan.total}")

    def step(self, order: BlockOrder) -> float:
        """One optimizer step over `grad_accum` micro-batches; return its training loss."""
        cfg, accelerator, state = self.job.cfg, self.job.accelerator, self.state
        world = self.job.world
        started = time.monotonic()
        step_loss, step_tokens = 0.0, 0
        for micro in range(cfg.grad_accum):
            first = (state.step * cfg.grad_accum + micro) * world + accelerator.process_index
            rows = order.rows(first * cfg.batch_size, cfg.batch_size)
            ids, mask, labels = to_batch(self.data.train, rows)
            last = micro == cfg.grad_accum - 1
            # Gradients are averaged across processes only on the last micro-batch.
            with nullcontext() if last else accelerator.no_sync(self.model):
                loss = self.model(
                    input_ids=ids.to(accelerator.device),
                    attention_mask=mask.to(accelerator.device),
                    labels=labels.to(accelerator.device),
                ).loss
                accelerator.backward(loss / cfg.grad_accum)
            step_loss += loss.item() / cfg.grad_accum
            step_tokens += int(mask.sum())
        if cfg.max_grad_norm:
            accelerator.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.tokens += step_tokens * world
        state.train_seconds += time.monotonic() - started
        return step_loss

    def follow_plan(self) -> None:
        """Set the learning rate of the coming step from the plan just made (the scheduler
        set it at the end of the last step, by the plan before)."""
        scheduler = self.scheduler
        rates = [
            base * rule(scheduler.last_epoch)
            for base, rule in zip(scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
        ]
        for group, rate in zip(self.optimizer.param_groups, rates, strict=True):
            group["lr"] = rate
        scheduler._last_lr = rates  # what get_last_lr() reports

    def evaluate(self, train_loss: float) -> str:
        """Held-out loss now: remember the best weights, count toward early stop; return the
        loss as the progress bar shows it."""
        state = self.state
        loss_now = self.measure_loss()
        state.history.append(
            {"step": state.step, "train_loss": train_loss, "heldout_loss": loss_now}
        )
        if loss_now is not None and (state.best_loss is None or loss_now < state.best_loss):
            state.best_loss, state.best_step = loss_now, state.step
            state.evals_without_improvement = 0
            self.best = self.lora_weights()
        else:
            state.evals_without_improvement += 1
            state.stopped_early = 0 < self.job.cfg.patience <= state.evals_without_improvement
        self.model.train()
        return f"{loss_now:.3f}" if loss_now is not None else "-"

    def lora_weights(self) -> dict[str, Any]:
        """A CPU copy of the LoRA weights (gathered from every rank under FSDP)."""
        from peft import get_peft_model_state_dict

        full = self.job.accelerator.get_state_dict(self.model) if self.job.fsdp else None
        weights = get_peft_model_state_dict(self.peft_model, state_dict=full)
        return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in weights.items()}

    def measure_loss(self) -> float | None:
        job = self.job
        return heldout_loss(
            self.eval_model,
            self.data.eval_blocks,
            job.cfg.batch_size,
            job.accelerator.device,
            progress=job.progress and job.main,
        )

    def measure_lines(self, *, base: bool = False) -> dict[str, Any]:
        """Next-line exact match on the held-out samples (main process, not under FSDP).
        `base`: the model before training, in the format it is served with without an
        adapter (a learned format's markers mean nothing to it yet)."""
        from lsp_server.model.wiring import choose_format

        job, data = self.job, self.data
        fmt = choose_format(data.loaded) if base and data.fmt.learned else data.fmt
        result: dict[str, Any] = {"match_samples": len(data.line_samples)}
        if job.main and not job.fsdp and data.line_samples:
            result["next_line_exact_match"] = next_line_exact_match(
                self.peft_model,
                data.loaded.tokenizer,
                fmt,
                data.line_samples,
                window_tokens=job.cfg.match_window_tokens,
                max_tokens=job.cfg.match_max_tokens,
                progress=job.progress,
            )
        job.accelerator.wait_for_everyone()
        return result

    def save_checkpoint(self) -> None:
        job = self.job
        weights = self.lora_weights()
        if job.main:
            try:
                checkpoint.save(
                    job.work, self.state, weights, self.best, self.optimizer, self.scheduler
                )
            except OSError as exc:
                raise disk_error(exc, job.work) from exc
        job.accelerator.wait_for_everyone()


# --- helpers ----------------------------------------------------------------------------------


def _wrap_lora(cfg: FinetuneConfig, base: Any) -> Any:
    """LoRA on every linear layer but the output (or the named modules)."""
    from peft import LoraConfig, get_peft_model

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
        lora_alpha=cfg.lora_alpha,  # type: ignore[arg-type]  # PEFT accepts a float
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():  # PEFT still asks for transformers' deprecated spelling
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        return get_peft_model(base, lora_config)


def _progress_bar(total: int, initial: int, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        desc="finetune",
        file=Quiet(sys.stderr),  # a reader gone (`| tee` and Ctrl-C) never stops training
        disable=not enabled,
        dynamic_ncols=True,
    )


def _replanned(plan: StepPlan, step: int, accelerator: Any) -> bool:
    """Plan (or cut the plan) after `step`; whether the plan changed. Every process runs
    the main process's plan (their clocks differ)."""
    changed = plan.step_done(step) | plan.out_of_time(step)
    if accelerator.num_processes > 1:
        import torch
        from accelerate.utils import broadcast

        total = torch.tensor([plan.total], device=accelerator.device)
        main_total = int(broadcast(total, from_process=0).item())
        changed = changed or main_total != plan.total
        plan.state.total = main_total
    return changed


def _check_something_new(cfg: FinetuneConfig, repo: Path, since: Since) -> None:
    """Raise NothingNew where no training file changed and no commit crossed the cut
    since the adapter being updated was trained."""
    _, train_files, _ = split_repository(cfg, repo)
    changed, _ = since.split_files(train_files)
    if not changed and not since.new_commits:
        raise incremental.NothingNew(
            f"nothing new in {repo} since {since.commit[:12]}, which the adapter in "
            f"{since.adapter} was trained on; nothing written (--from-scratch retrains it)"
        )


def _mute(line: str) -> None:
    """`say` for the processes that are not the main one."""


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


def _summary(
    job: Job, data: Data, state: checkpoint.TrainState, after: dict[str, Any]
) -> dict[str, Any]:
    """What `--json` prints (with the data statistics added) and the plain report shows."""
    plan = data.plan
    return {
        "adapter": str(job.out),
        "base_model": data.loaded.name,
        "prompt_format": data.fmt.name,
        "tasks": data.tasks,
        "steps": state.step,
        "total_steps": plan.total,  # the planned steps
        "step_limit": plan.limit,  # what the epochs (or max_steps) asked for
        "stop_reason": plan.stop_reason(state.step, state.stopped_early),
        "time_budget_minutes": round(job.deadline.seconds / 60, 2)
        if job.deadline.seconds
        else None,
        "seconds_per_step_planned": plan.state.seconds_per_step,
        "wall_seconds": round(job.deadline.clock() - job.deadline.started, 1),
        "started_from": str(data.start[0]) if data.start else None,
        "incremental": data.replayed,
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
        "match_samples": len(data.line_samples),
    }


def _adapter_meta(
    job: Job,
    data: Data,
    state: checkpoint.TrainState,
    after: dict[str, Any],
    summary: dict[str, Any],
) -> AdapterMeta:
    """What `codetailor.json` records: enough to use, trust and reproduce the adapter."""
    from lsp_server import __version__

    cfg, loaded = job.cfg, data.loaded
    source = loaded.source
    # For a local model, the path is what a later `--model` needs.
    name = str(source.path) if source.kind in ("directory", "gguf") else source.name
    layout, layout_version = data.next_edit_layout
    # What a later incremental run compares against: the files as read then, and the
    # newest commit whose next edits it learned (before the temporal cut).
    repository = repository_info(job.repo) | {
        "files_read_at": data.files_read_at,
        "history_through": data.history_through,
    }
    return AdapterMeta(
        codetailor_version=__version__,
        base_model=BaseModelRef(name=name, fingerprint=loaded.fingerprint, source=source.kind),
        prompt_format=data.fmt.name,
        prompt_format_version=data.fmt.version,
        tasks=data.tasks,
        next_edit_format=layout,
        next_edit_format_version=layout_version,
        repository=repository,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        training={
            "steps": state.step,
            "total_steps": summary["total_steps"],
            "step_limit": summary["step_limit"],
            "stop_reason": summary["stop_reason"],
            "time_budget_minutes": summary["time_budget_minutes"],
            "started_from": started_from(*data.start) if data.start else None,
            "incremental": data.replayed,
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
        data=data.stats(),
        evaluation={"before": state.before, "after": after, "history": state.history},
    )
