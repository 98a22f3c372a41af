"""`codetailor finetune REPO --out DIR --feedback`: tune the repository's adapter on what the
user kept.

config -> feedback log -> preference data (finetune/data/preferences.py) ->
the adapter at DIR, trainable -> reference log-probs with the adapter disabled
(the base model; `reference=start`: the adapter as it starts, DPO's own choice,
the model it tunes) -> measure -> DPO on pairs + KTO on unpaired labels (times
`kto_weight`) + `sft_weight` times the chosen side's token loss -> measure ->
gate -> replace DIR, or keep it and say why. Most pairs are what the user typed
at a place against the suggestion they did not keep there; DPO only separates
the two, while the token loss on what they typed pulls the model towards
writing it. Without it (`sft_weight=0`) DPO and KTO made a trained adapter a
worse model of the code and of the very files the feedback came from
(docs/benchmarks.md, run 6); with it they left it no better there.

Every step also takes `anchor_weight` times the token loss on `anchor_rows` blocks
of the repository's training files, as the adapter's recipe builds them: the
pull of the preferences alone moves the adapter away from the code (held-out
loss 2.40 -> 3.04 in docs/benchmarks.md's first run), and the anchor keeps it a
model of the repository, as InstructGPT mixed pre-training gradients into its
PPO updates. `preference_weight=0` trains on the anchor alone: the control that
says what the feedback adds. The token loss also trains the adapter further on the
code; `anchor_kind=kl` holds it instead, by the KL divergence from the starting
adapter's next-token distributions on the same blocks. Neither `reference=start`
nor the anchor kept the held-out loss from rising from a trained adapter in
docs/benchmarks.md (runs 4 and 5; the KL anchor was not measured there).

The gate keeps the new adapter only if, on the repository's held-out files,
token loss and next-line exact match are no worse (finetune/evaluate.py), and
the held-out feedback is ranked better: the implicit reward (policy minus
reference log-probability) puts kept suggestions above rejected ones more often.
Both losses are written here (~40 lines). TRL 1.16 would fit (`pip install
--dry-run trl` leaves transformers 5.24 and torch 2.13 alone) but brings
datasets, pandas and pyarrow, and DPO pairs and KTO labels would need two of
its trainers; here they share one batch, one optimizer and the gate's models.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import shutil
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from finetune.data.examples import Blocks
from finetune.data.preferences import (
    PreferenceData,
    PreferenceExample,
    preference_data,
    split_by_place,
)
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import AdapterMeta, write_meta

log = logging.getLogger("codetailor.finetune.preference")


@dataclass
class PreferenceConfig:
    """How to tune an adapter on feedback; every field has a default that runs on a CPU.
    The defaults are the setting measured in docs/benchmarks.md ("Learning from feedback")."""

    def __or__(self, changes: dict[str, Any]) -> PreferenceConfig:
        return replace(self, **changes)

    repo: str = ""
    adapter: str = ""  # the adapter folder to tune (replaced only when the gate passes)
    device: str = "auto"
    dtype: str = "auto"
    seed: int = 0
    beta: float = 0.1  # strength of the pull towards the reference (DPO and KTO)
    reference: str = "base"  # DPO and KTO's reference: "base" (adapter disabled) or "start"
    lr: float = 2e-4
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8  # examples (pairs or unpaired) per optimizer step
    desirable_weight: float = 1.0
    undesirable_weight: float = 1.0
    kto_weight: float = 1.0  # of the KTO loss on unpaired labels, against DPO's on pairs
    sft_weight: float = 1.0  # of the mean token loss on the chosen side (pairs, desirable)
    preference_weight: float = 1.0  # of DPO + KTO + SFT together (0: the anchor alone)
    anchor_weight: float = 1.0  # of the anchor's loss on the repository's own training blocks
    anchor_kind: str = "tokens"  # "tokens": their token loss; "kl": KL from the start's predictions
    anchor_rows: int = 2  # training blocks per step
    anchor_seq_len: int = 256  # tokens per anchor block, at most (the recipe's seq_len)
    max_prompt_tokens: int = 96  # the prompt's last tokens scored against (CPU cost)
    heldout_feedback: float = 0.2  # share of places held out for preference accuracy
    min_examples: int = 8
    loss_tolerance: float = 0.0  # relative rise of held-out loss the gate lets pass
    source: str | None = None  # only events from "editor" or "simulated"
    log_dir: str | None = None  # default: the repository's log under $CODETAILOR_HOME
    repo_eval: dict[str, Any] = field(default_factory=dict)  # overrides of the adapter's recipe
    candidate: str | None = None  # also write the tuned adapter here, kept or not (to measure it)


# --- losses and log-probabilities -----------------------------------------------------------


def dpo_loss(pc: Any, pr: Any, rc: Any, rr: Any, beta: float) -> Any:
    """DPO: -log sigmoid(beta * ((chosen - ref chosen) - (rejected - ref rejected)))."""
    import torch

    return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def kto_loss(
    policy: Any, ref: Any, desirable: Any, beta: float, wd: float = 1.0, wu: float = 1.0
) -> Any:
    """KTO with unpaired labels: desirable completions pushed above the reference point,
    undesirable ones below it. The reference point is the batch's mean log-ratio, floored
    at 0 and detached (the KL estimate of the KTO paper)."""
    import torch

    ratio = policy - ref
    z = ratio.detach().mean().clamp(min=0)
    up = wd * (1 - torch.sigmoid(beta * (ratio - z)))
    down = wu * (1 - torch.sigmoid(beta * (z - ratio)))
    return torch.where(desirable, up, down).mean()


def encode(tokenizer: Any, example: PreferenceExample, max_prompt_tokens: int) -> tuple[list, int]:
    """(token ids, index of the first completion token): the prompt's last tokens, then the
    completion as the tokenizer splits prompt + completion together."""
    prompt_ids = tokenizer.encode(example.prompt, add_special_tokens=False)
    full = tokenizer.encode(example.prompt + example.completion, add_special_tokens=False)
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    start = min(start, len(full) - 1)
    cut = max(0, start - max_prompt_tokens)
    return full[cut:], max(start - cut, 1)


def completion_logp(model: Any, ids: list[int], start: int, device: Any) -> Any:
    """Sum of log-probabilities of ids[start:] given what comes before."""
    import torch

    tensor = torch.tensor([ids], device=device)
    logits = model(input_ids=tensor).logits[0, start - 1 : -1].float()
    targets = tensor[0, start:]
    return torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum()


class Scorer:
    """Log-probabilities of examples under the policy and (cached) under the reference:
    the base model (`reference="base"`, the adapter disabled) or the adapter as it was when
    the scorer was made (`"start"`: DPO's own choice, the model it starts from)."""

    REFERENCES = ("base", "start")

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_prompt_tokens: int,
        device: Any,
        reference: str = "base",
    ) -> None:
        one_of("reference", reference, self.REFERENCES)
        self.model, self.device = model, device
        self.tokenizer, self.max_prompt_tokens = tokenizer, max_prompt_tokens
        self._encoded: dict[str, tuple[list, int]] = {}
        self._ref: dict[str, float] = {}
        self._start = snapshot(model) if reference == "start" else None

    def encoded(self, e: PreferenceExample) -> tuple[list, int]:
        if e.id not in self._encoded:
            self._encoded[e.id] = encode(self.tokenizer, e, self.max_prompt_tokens)
        return self._encoded[e.id]

    def policy(self, e: PreferenceExample) -> Any:
        return completion_logp(self.model, *self.encoded(e), self.device)

    def tokens(self, e: PreferenceExample) -> int:
        """How many completion tokens `e` has."""
        ids, start = self.encoded(e)
        return max(len(ids) - start, 1)

    def reference(self, e: PreferenceExample) -> float:
        """The reference's log-probability: the same network with the adapter disabled, or
        with its starting weights."""
        import torch

        if e.id not in self._ref:
            with torch.no_grad(), evaluating(self.model):
                if self._start is not None:
                    start = as_of(self.model, self._start)
                    logp = completion_logp(start, *self.encoded(e), self.device)
                else:
                    with self.model.disable_adapter():
                        logp = completion_logp(self.model, *self.encoded(e), self.device)
            self._ref[e.id] = float(logp)
        return self._ref[e.id]

    def rewards(self, examples: list[PreferenceExample]) -> list[float]:
        """Implicit rewards: policy minus reference log-probability."""
        import torch

        with torch.no_grad(), evaluating(self.model):
            return [float(self.policy(e)) - self.reference(e) for e in examples]


def batch_loss(scorer: Scorer, items: list[Any], cfg: PreferenceConfig) -> Any:
    """The mean loss of a batch of pairs (tuples) and unpaired examples: DPO on the pairs,
    KTO (times `kto_weight`) on the rest, plus `sft_weight` times the chosen side's mean
    token loss (a pull towards what the user wrote, which DPO alone does not give)."""
    import torch

    pairs = [i for i in items if isinstance(i, tuple)]
    single = [i for i in items if not isinstance(i, tuple)]
    losses = []
    chosen: list[tuple[PreferenceExample, Any]] = []
    if pairs:
        pc = torch.stack([scorer.policy(c) for c, _ in pairs])
        pr = torch.stack([scorer.policy(r) for _, r in pairs])
        rc = torch.tensor([scorer.reference(c) for c, _ in pairs], device=pc.device)
        rr = torch.tensor([scorer.reference(r) for _, r in pairs], device=pc.device)
        losses.append(dpo_loss(pc, pr, rc, rr, cfg.beta) * len(pairs))
        chosen += [(c, pc[n]) for n, (c, _) in enumerate(pairs)]
    if single:
        p = torch.stack([scorer.policy(e) for e in single])
        r = torch.tensor([scorer.reference(e) for e in single], device=p.device)
        labels = torch.tensor([e.desirable for e in single], device=p.device)
        kto = kto_loss(p, r, labels, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight)
        losses.append(cfg.kto_weight * kto * len(single))
        chosen += [(e, p[n]) for n, e in enumerate(single) if e.desirable]
    if cfg.sft_weight and chosen:
        nll = torch.stack([-logp / scorer.tokens(e) for e, logp in chosen]).sum()
        losses.append(cfg.sft_weight * nll)
    return sum(losses) / len(items)


def preference_accuracy(scorer: Scorer, data: PreferenceData) -> float | None:
    """How often a kept suggestion gets a higher implicit reward than a rejected one: over
    the pairs, and over every (kept, rejected) combination of the unpaired (ties count half)."""
    examples = data.examples
    rewards = dict(zip([e.id for e in examples], scorer.rewards(examples), strict=True))
    comparisons = [(c.id, r.id) for c, r in data.pairs]
    kept = [e.id for e in data.unpaired if e.desirable]
    rejected = [e.id for e in data.unpaired if not e.desirable]
    comparisons += [(k, r) for k in kept for r in rejected]
    if not comparisons:
        return None
    wins = sum(
        1.0 if rewards[k] > rewards[r] else 0.5 if rewards[k] == rewards[r] else 0.0
        for k, r in comparisons
    )
    return wins / len(comparisons)


class Anchor:
    """The repository's training blocks, `rows` a step in a seeded shuffled order, and what
    they hold the adapter to: with `kind` "tokens" their token loss keeps the adapter a model
    of the code while preferences pull it (it also trains it further on the code); with "kl"
    the KL divergence from the starting adapter's next-token distributions on them keeps
    its predictions there instead (from `hold`, which `train` calls before its first step)."""

    KINDS = ("tokens", "kl")

    def __init__(self, blocks: Blocks, rows: int, seed: int, kind: str = "tokens") -> None:
        one_of("anchor_kind", kind, self.KINDS)
        self.blocks, self.rows, self.kind = blocks, max(1, rows), kind
        self._rng = random.Random(seed)
        self._order: list[int] = []
        self._start: dict[str, Any] = {}

    @classmethod
    def for_repository(
        cls, repo_eval: Any, tokenizer: Any, fmt: Any, cfg: PreferenceConfig
    ) -> Anchor | None:
        """The anchor `cfg` asks for on the repository's training files (RepoEval's
        split), or None (no weight, or no training blocks)."""
        if not cfg.anchor_weight:
            return None
        blocks = repo_eval.training_blocks(tokenizer, fmt, cfg.anchor_seq_len)
        return cls(blocks, cfg.anchor_rows, cfg.seed, cfg.anchor_kind) if blocks.ids else None

    def hold(self, model: Any) -> None:
        """Take the model's trainable weights now as the start a "kl" anchor holds it to."""
        if self.kind == "kl":
            self._start = snapshot(model)

    def loss(self, model: Any, device: Any) -> Any:
        from finetune.evaluate import to_batch

        n = len(self.blocks.ids)
        while len(self._order) < min(self.rows, n):
            self._order += self._rng.sample(range(n), n)
        rows, self._order = self._order[: self.rows], self._order[self.rows :]
        ids, mask, labels = (t.to(device) for t in to_batch(self.blocks, rows))
        if self.kind == "tokens":
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss
        return self._kl(model, ids, mask)

    def _kl(self, model: Any, ids: Any, mask: Any) -> Any:
        """Mean over the blocks' tokens of KL(start || now) between next-token distributions;
        the start's come from the same network with its starting weights swapped in for one
        forward (torch.func, the live weights untouched), without dropout."""
        import torch

        if not self._start:
            raise CodetailorError("a kl anchor needs hold(model) before its first loss")
        with torch.no_grad(), evaluating(model):
            logits = as_of(model, self._start)(input_ids=ids, attention_mask=mask).logits
            start = logits.float().log_softmax(-1)
        current = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        kl = torch.nn.functional.kl_div(current, start, log_target=True, reduction="none")
        return kl.sum(-1)[mask.bool()].mean()


def one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    """One clear error for a setting outside its choices."""
    if value not in choices:
        raise CodetailorError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """The model in eval mode (no dropout) for a while, then back in the mode it was in:
    references and rewards are scores, not training samples."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def snapshot(model: Any) -> dict[str, Any]:
    """A copy of the model's trainable (LoRA) weights as they are now."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def as_of(model: Any, weights: dict[str, Any]) -> Any:
    """The model as a function with `weights` in place of its own, for a forward pass
    (torch.func: the live weights are left untouched, so autograd's record stays valid)."""
    import torch

    return lambda **inputs: torch.func.functional_call(model, weights, (), inputs, strict=False)


def train(
    model: Any,
    scorer: Scorer,
    data: PreferenceData,
    cfg: PreferenceConfig,
    anchor: Anchor | None = None,
) -> list[float]:
    """DPO + KTO steps over the training data, each with the anchor's token loss when there
    is one; returns the loss of each step."""
    import torch

    if not cfg.preference_weight and not (anchor and cfg.anchor_weight):
        raise CodetailorError("preference_weight and anchor_weight are both 0: nothing to train")
    items: list[Any] = list(data.pairs) + list(data.unpaired)
    steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(items) / cfg.batch_size))
    for e in data.examples if cfg.preference_weight else []:  # fixed: score it once, first
        scorer.reference(e)
    if anchor is not None:
        anchor.hold(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    order: list[Any] = []
    losses: list[float] = []
    bar = _bar(steps)
    model.train()
    for _ in range(steps):
        if len(order) < cfg.batch_size:
            order += rng.sample(items, len(items))
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        figures, loss = {}, torch.zeros((), device=scorer.device)
        if cfg.preference_weight:
            preference = batch_loss(scorer, batch, cfg)
            loss = cfg.preference_weight * preference
            figures["preference"] = f"{float(preference.detach()):.4f}"
        if anchor is not None and cfg.anchor_weight:
            code = anchor.loss(model, scorer.device)
            loss = loss + cfg.anchor_weight * code
            figures["anchor"] = f"{float(code.detach()):.4f}"
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.set_postfix(figures, refresh=False)
        bar.update(1)
    bar.close()
    model.eval()
    return losses


def _bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="preference", file=sys.stderr, dynamic_ncols=True)


# --- the gate -------------------------------------------------------------------------------


def gate(
    before: dict[str, Any], after: dict[str, Any], loss_tolerance: float = 0.0
) -> tuple[bool, list[str]]:
    """Keep the new adapter? (yes or no, and one reason per failed check)."""
    reasons = []
    lb, la = before.get("heldout_loss"), after.get("heldout_loss")
    if lb is not None and la is not None and la > lb * (1 + loss_tolerance):
        reasons.append(f"held-out loss rose from {lb:.4f} to {la:.4f}")
    eb, ea = before.get("next_line_exact_match"), after.get("next_line_exact_match")
    if eb is not None and ea is not None and ea < eb:
        reasons.append(f"next-line exact match fell from {eb:.3f} to {ea:.3f}")
    pb, pa = before.get("preference_accuracy"), after.get("preference_accuracy")
    if pa is None:
        reasons.append("no held-out feedback to rank (record more, or lower heldout_feedback)")
    elif pb is not None and pa <= pb:
        reasons.append(f"held-out feedback ranked no better ({pb:.3f} -> {pa:.3f})")
    return not reasons, reasons


# --- the run --------------------------------------------------------------------------------


def feedback_log(repo: str | Path) -> Path:
    """The folder of the repository's feedback log under $CODETAILOR_HOME."""
    from lsp_server.model.loading import cache_home
    from lsp_server.session.feedback import feedback_dir

    return feedback_dir(repo, cache_home())


def load_records(cfg: PreferenceConfig) -> list[Any]:
    """The suggestion records of the repository's feedback log (optionally one source)."""
    from lsp_server.session.feedback import read_events, suggestion_records

    folder = Path(cfg.log_dir) if cfg.log_dir else feedback_log(cfg.repo)
    records = suggestion_records(read_events(folder))
    if cfg.source:
        records = [r for r in records if (r.shown.get("source") or "editor") == cfg.source]
    if len(records) < cfg.min_examples:
        raise CodetailorError(
            f"the feedback log {folder} holds {len(records)} suggestions; preference tuning "
            f"needs at least {cfg.min_examples}: use completions for a while first"
        )
    return records


def prompt_builder(tokenizer: Any, fmt: Any, default_window: int) -> Any:
    """Rebuild prompts with the server's own layout code (one Completer per window size)."""
    from lsp_server.completion.completer import Completer

    completers: dict[tuple[int, str | None], Completer] = {}

    def build(
        prefix: str,
        suffix: str,
        path: str | None,
        snippets: list[Any],
        window: int | None,
        repo: str | None,
    ) -> str:
        key = (int(window or default_window), repo)
        if key not in completers:
            completers[key] = Completer(None, tokenizer, fmt, window_tokens=key[0], repo=repo)  # type: ignore[arg-type]
        return completers[key].prompt_for(prefix, suffix, path=path, context=snippets)

    return build


def run_preference(cfg: PreferenceConfig, *, progress: bool = True) -> dict[str, Any]:
    """Tune the adapter at `cfg.adapter` on the feedback log; replace it only if the gate
    passes. Returns the summary (kept or not, and why)."""
    from finetune.repo_eval import RepoEval
    from lsp_server.completion.prompt import get_format
    from lsp_server.model.adapter_meta import read_meta
    from lsp_server.model.factory import window_tokens
    from lsp_server.model.loading import load_model

    adapter = Path(cfg.adapter).expanduser().absolute()
    meta = read_meta(adapter) if adapter.is_dir() else None
    if meta is None or meta.base_model is None:
        raise CodetailorError(
            f"{adapter} holds no codetailor adapter; train one first: "
            f"codetailor finetune {cfg.repo} --out {cfg.adapter}"
        )
    records = load_records(cfg)
    loaded = load_model(meta.base_model.name, device=cfg.device, dtype=cfg.dtype, training=True)
    fmt = get_format(meta.prompt_format or "prefix-only")
    build = prompt_builder(loaded.tokenizer, fmt, window_tokens(loaded.device))
    train_records, held_records = split_by_place(records, cfg.heldout_feedback, cfg.seed)
    train_data = preference_data(train_records, build)
    held_data = preference_data(held_records, build)
    log.info("preference data: train %s, held out %s", train_data.counts(), held_data.counts())
    if not train_data.pairs and not any(not e.desirable for e in train_data.unpaired):
        raise CodetailorError("the feedback log has no rejected suggestions to learn from")
    if not any(e.desirable for e in train_data.examples):
        raise CodetailorError("the feedback log has no kept suggestions to learn from")
    model = _trainable(loaded.model, adapter, cfg.seed)
    scorer = Scorer(model, loaded.tokenizer, cfg.max_prompt_tokens, loaded.device, cfg.reference)
    repo_eval = RepoEval.for_adapter(Path(cfg.repo), meta, adapter, cfg.repo_eval, cfg.seed)

    def measure() -> dict[str, Any]:
        figures = repo_eval.measure(model, loaded.tokenizer, fmt, loaded.device, progress)
        return figures | {"preference_accuracy": preference_accuracy(scorer, held_data)}

    anchor = Anchor.for_repository(repo_eval, loaded.tokenizer, fmt, cfg)
    before = measure()
    losses = train(model, scorer, train_data, cfg, anchor)
    after = measure()
    keep, reasons = gate(before, after, cfg.loss_tolerance)
    summary = {
        "adapter": str(adapter),
        "kept": keep,
        "reasons": reasons,
        "before": before,
        "after": after,
        "train": train_data.counts(),
        "heldout": held_data.counts(),
        "steps": len(losses),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
    }
    if keep:
        _replace_adapter(model, adapter, meta, summary, cfg)
    if cfg.candidate:
        _replace_adapter(model, Path(cfg.candidate).absolute(), meta, summary, cfg)
    return summary


def _trainable(base: Any, adapter: Path, seed: int) -> Any:
    """The adapter on the base model, unmerged and trainable (its LoRA weights only)."""
    import torch
    from peft import PeftModel

    torch.manual_seed(seed)
    with warnings.catch_warnings():  # PEFT still asks for transformers' deprecated spelling
        warnings.filterwarnings("ignore", "`is_gradient_checkpointing` is deprecated")
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
    base.config.use_cache = False
    return model


def _replace_adapter(
    model: Any, adapter: Path, meta: AdapterMeta, summary: dict[str, Any], cfg: PreferenceConfig
) -> None:
    """Write the tuned adapter beside the one at `adapter`, then swap it in
    (finetune/adapter.py); the recipe is copied from the original adapter."""
    from finetune.adapter import disk_error, publish, work_dir

    work = work_dir(adapter)
    staging = work / "adapter"
    shutil.rmtree(staging, ignore_errors=True)
    history = list(meta.preference_tuning)
    history.append(
        {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": asdict(cfg),
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


# --- the command ----------------------------------------------------------------------------


def config_from_args(args: argparse.Namespace) -> PreferenceConfig:
    """`finetune REPO --out DIR --feedback [--epochs E] [--max-steps N] [--seed S] ...`;
    --holdout is the share of feedback held out, --seq-len the prompt tokens kept, and
    `--set KEY=VALUE` sets any PreferenceConfig field (e.g. sft_weight=1, beta=0.2)."""
    cfg = PreferenceConfig(repo=args.repo, adapter=args.out)
    cfg = cfg | _settings(getattr(args, "settings", None) or [])
    for name in ("device", "dtype", "seed", "epochs", "max_steps"):
        if getattr(args, name, None) is not None:
            setattr(cfg, name, getattr(args, name))
    if getattr(args, "holdout", None) is not None:
        cfg.heldout_feedback = args.holdout
    if getattr(args, "seq_len", None) is not None:  # the prompt's tokens kept per example
        cfg.max_prompt_tokens = args.seq_len
    return cfg


def _settings(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings as PreferenceConfig changes (values as JSON, else as text)."""
    names = {f for f in PreferenceConfig.__dataclass_fields__ if f not in ("repo", "adapter")}
    changes: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in names:
            raise CodetailorError(
                f"--set {pair!r}: with --feedback, give KEY=VALUE with KEY one of "
                + ", ".join(sorted(names))
            )
        try:
            changes[key] = json.loads(value)
        except ValueError:
            changes[key] = value
    return changes


def cmd_preference(args: argparse.Namespace) -> int:
    """The `--feedback` branch of `codetailor finetune`."""
    summary = run_preference(config_from_args(args), progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary), flush=True)
        return 0
    print(format_summary(summary))
    return 0


def format_summary(s: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else "-"

    b, a = s["before"], s["after"]
    lines = [
        f"feedback: {s['train']['pairs']} pairs, {s['train']['unpaired']} unpaired "
        f"({s['train']['desirable']} kept, {s['train']['undesirable']} rejected); "
        f"held out: {s['heldout']['pairs']} pairs, {s['heldout']['unpaired']} unpaired",
        f"steps: {s['steps']}, loss {num(s['loss_first'])} -> {num(s['loss_last'])}",
    ]
    for key in ("heldout_loss", "next_line_exact_match", "preference_accuracy"):
        lines.append(f"{key.replace('_', ' ')}: {num(b.get(key))} -> {num(a.get(key))}")
    if s["kept"]:
        lines.append(f"kept: the tuned adapter replaced {s['adapter']}")
    else:
        lines.append(f"not kept ({'; '.join(s['reasons'])}); {s['adapter']} is unchanged")
    return "\n".join(lines)
