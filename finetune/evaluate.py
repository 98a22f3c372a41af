"""Held-out measurements: token loss on packed held-out text, and next-line exact match.

Next-line exact match completes held-out lines through the server's own
`Completer` (same prompt window, same format, same stopping rules), so the
figure is what a user would see from `codetailor complete` at those cursors.
Which cursors and how a line is scored are defined once, in
`lsp_server.measure.quality.metrics`, and shared with `codetailor eval`.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from finetune.data.examples import IGNORE, Blocks
from lsp_server.measure.quality import metrics
from lsp_server.repo.corpus import SourceFile


def _bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    from finetune.console import Quiet  # a reader gone never stops the measurement

    return tqdm(total=total, desc=desc, file=Quiet(sys.stderr), leave=False, disable=not enabled)


def heldout_loss(
    model: Any, blocks: Blocks, batch_size: int, device: Any, *, progress: bool = False
) -> float | None:
    """Mean next-token cross-entropy (nats) over every real token of `blocks`; None if empty."""
    import torch

    if not blocks.ids:
        return None
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad(), _bar(len(blocks.ids), "held-out loss", progress) as bar:
        for start in range(0, len(blocks.ids), batch_size):
            ids, mask, labels = to_batch(
                blocks, range(start, min(start + batch_size, len(blocks.ids)))
            )
            out = model(input_ids=ids.to(device), attention_mask=mask.to(device))
            logits = out.logits[:, :-1].float()
            target = labels[:, 1:].to(device)
            loss = torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)),
                target.reshape(-1),
                reduction="sum",
                ignore_index=-100,
            )
            total += float(loss)
            count += int((target != -100).sum())
            bar.update(len(ids))
    model.train(was_training)
    return total / count if count else None


def to_batch(blocks: Blocks, rows: Sequence[int]) -> tuple[Any, Any, Any]:
    """(input_ids, attention_mask, labels) for some rows, padded to the longest; padding
    (and where `blocks.labels` says so, a prompt) is left out of the loss."""
    import torch

    width = max(len(blocks.ids[i]) for i in rows)
    # Padding repeats a row's last id: masked out, and a valid id for any vocabulary.
    ids = torch.tensor(
        [blocks.ids[i] + blocks.ids[i][-1:] * (width - len(blocks.ids[i])) for i in rows],
        dtype=torch.long,
    )
    lengths = torch.tensor([blocks.lengths[i] for i in rows])
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    if blocks.labels is None:
        return ids, mask, ids.masked_fill(mask == 0, IGNORE)
    labels = torch.tensor(
        [blocks.labels[i] + [IGNORE] * (width - len(blocks.labels[i])) for i in rows],
        dtype=torch.long,
    )
    return ids, mask, labels.masked_fill(mask == 0, IGNORE)


@dataclass(frozen=True)
class LineSample:
    """A cursor at the first non-blank character of a held-out line, the file without that
    line's text (the user is about to write it), and the text expected there."""

    path: str
    text: str
    offset: int
    expected: str


def next_line_samples(files: Sequence[SourceFile], count: int, seed: int = 0) -> list[LineSample]:
    """`count` cursors drawn from the files' next-line cursors (`metrics.next_lines`)."""
    candidates = [
        LineSample(f.path, metrics.line_cut(f.text, cursor.offset), cursor.offset, cursor.expected)
        for f in files
        for cursor in metrics.next_lines(f.text)
    ]
    rng = random.Random(seed)
    return rng.sample(candidates, min(count, len(candidates)))


def next_line_exact_match(
    model: Any,
    tokenizer: Any,
    fmt: Any,
    samples: Sequence[LineSample],
    *,
    window_tokens: int,
    max_tokens: int,
    progress: bool = False,
) -> float | None:
    """The share of samples whose completed line matches the held-out one, scored as
    `codetailor eval` scores its `line` samples (`metrics.next_line_exact_match`)."""
    from lsp_server.model.factory import weights_completer

    if not samples:
        return None
    # A PEFT wrapper hides the forward signature the backend inspects; its base
    # model carries the LoRA layers, so the completer runs that.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    was_training = base.training
    base.eval()
    completer = weights_completer(base, tokenizer, fmt, window_tokens)
    pairs: list[tuple[str, str]] = []
    with _bar(len(samples), "next-line match", progress) as bar:
        for s in samples:
            result = completer.complete(s.text, s.offset, max_tokens=max_tokens, mode="line")
            pairs.append((result.text, s.expected))
            bar.update(1)
    base.train(was_training)
    return metrics.next_line_exact_match(pairs)
