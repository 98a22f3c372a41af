"""Completion quality on a repository's held-out files, through the server's own prompt path.

Cursor positions are sampled from the files that `finetune` holds out (the
same deterministic split by path), of three kinds:
- `line`: at the first non-blank character of a line; the rest of the line is expected
  (the next-line cursors of `metrics.next_lines`, which `finetune` reports too);
- `mid`: inside a line, after at least one word; the rest of the line is expected;
  in both, the document is cut at the cursor's line end (`metrics.line_cut`): the
  file as it is before the user writes the rest of the line. Left in, the expected
  text would sit right of the cursor, where a FIM prompt shows it to the model and
  the server declines to complete in front of it;
- `block`: after a line that opens a block (`:` or `{`), with the block's body
  removed from the document; the body is expected.
Each completion is scored by exact match (whitespace-normalised) and edit
similarity. With context on, the other files of the repository are indexed as
the server would index the workspace, so the gain of retrieval shows.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lsp_server.measure.quality.metrics import (
    edit_similarity,
    exact_match,
    line_cut,
    next_lines,
    percentile,
)

Kind = Literal["line", "mid", "block"]
KINDS: tuple[Kind, ...] = ("line", "mid", "block")
_WORD_END = re.compile(r"\w\b")


@dataclass(frozen=True)
class Sample:
    """A document with the cursor at `offset`, and the text the user went on to write."""

    path: str
    kind: Kind
    text: str
    offset: int
    expected: str


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _line_samples(path: str, text: str) -> dict[Kind, list[Sample]]:
    lines = text.split("\n")
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    found: dict[Kind, list[Sample]] = {k: [] for k in KINDS}
    # The next-line cursors `finetune` reports too: one definition, in metrics.
    found["line"] = [
        Sample(path, "line", line_cut(text, c.offset), c.offset, c.expected)
        for c in next_lines(text)
    ]
    for n, line in enumerate(lines):
        body = line.strip()
        if n == 0 or len(body) < 4:
            continue
        # Mid-line: just after the end of a word, leaving at least 3 characters to write.
        ends = [
            m.end() for m in _WORD_END.finditer(line) if _indent(line) < m.end() < len(line) - 3
        ]
        if ends:
            cut = ends[len(ends) // 2]
            offset = starts[n] + cut
            found["mid"].append(
                Sample(path, "mid", line_cut(text, offset), offset, line[cut:].rstrip())
            )
        if body.endswith((":", "{")) and n + 1 < len(lines):
            block = _block_sample(path, lines, starts, n)
            if block:
                found["block"].append(block)
    return found


def _block_sample(path: str, lines: list[str], starts: list[int], opener: int) -> Sample | None:
    """The body of the block opened at line `opener`, cut out of the document."""
    depth = _indent(lines[opener])
    end = opener + 1
    while end < len(lines) and (not lines[end].strip() or _indent(lines[end]) > depth):
        end += 1
    while end > opener + 1 and not lines[end - 1].strip():
        end -= 1
    body = lines[opener + 1 : end]
    if not body or len(body) > 12 or not any(line.strip() for line in body):
        return None
    inner = _indent(body[0])
    before = "\n".join(lines[: opener + 1]) + "\n" + body[0][:inner]
    after = "\n" + "\n".join(lines[end:]) if end < len(lines) else ""
    expected = "\n".join(line.rstrip() for line in body)[inner:]
    return Sample(path, "block", before + after, len(before), expected)


def sample_cursors(files: Sequence[tuple[str, str]], count: int, seed: int = 0) -> list[Sample]:
    """`count` cursors from (path, text) files, split evenly over the kinds; same seed, same
    cursors."""
    pools: dict[Kind, list[Sample]] = {k: [] for k in KINDS}
    for path, text in sorted(files):
        for kind, samples in _line_samples(path, text).items():
            pools[kind].extend(samples)
    rng = random.Random(seed)
    chosen: list[Sample] = []
    leftovers: list[Sample] = []
    for i, kind in enumerate(KINDS):
        share = count // len(KINDS) + (1 if i < count % len(KINDS) else 0)
        order = rng.sample(range(len(pools[kind])), len(pools[kind]))
        chosen.extend(pools[kind][j] for j in order[:share])
        leftovers.extend(pools[kind][j] for j in order[share:])
    if len(chosen) < count:  # a kind with too few candidates: the others fill in
        chosen.extend(rng.sample(leftovers, min(count - len(chosen), len(leftovers))))
    return chosen


@dataclass(frozen=True)
class Scored:
    sample: Sample
    prediction: str
    exact: bool
    similarity: float
    latency_ms: float


def score(
    samples: Sequence[Sample],
    complete: Callable[[Sample], tuple[str, float]],
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], list[Scored]]:
    """Complete every sample with `complete(sample) -> (text, latency_ms)` and summarise."""
    scored = []
    for sample in samples:
        prediction, latency = complete(sample)
        scored.append(
            Scored(
                sample,
                prediction,
                exact_match(prediction, sample.expected),
                edit_similarity(prediction, sample.expected),
                latency,
            )
        )
        if progress:
            progress(1)
    return summarise(scored), scored


def summarise(scored: Sequence[Scored]) -> dict[str, Any]:
    def stats(rows: Sequence[Scored]) -> dict[str, Any]:
        n = max(len(rows), 1)
        return {
            "samples": len(rows),
            "exact_match": round(sum(r.exact for r in rows) / n, 4),
            "edit_similarity": round(sum(r.similarity for r in rows) / n, 4),
        }

    summary = stats(scored)
    latencies = [r.latency_ms for r in scored]
    summary["latency_ms_p50"] = round(percentile(latencies, 50), 1)
    summary["latency_ms_p95"] = round(percentile(latencies, 95), 1)
    summary["by_kind"] = {k: stats([r for r in scored if r.sample.kind == k]) for k in KINDS}
    return summary
