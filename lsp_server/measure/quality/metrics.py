"""The scores every measurement shares: exact match, edit similarity, next-line cursors, percentile.

Exact match and edit similarity follow CrossCodeEval and RepoBench. The
next-line metric (`next_lines` + `next_line_exact_match`) is the one definition
that `codetailor eval` (its `line` samples) and `codetailor finetune` (its
before/after figure) both report, and `percentile` is the one percentile of
every latency figure; `wilson_interval` is the one 95% interval of a share.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz.distance import Levenshtein

_WHITESPACE = re.compile(r"\s+")


def normalize_whitespace(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return _WHITESPACE.sub(" ", text).strip()


def exact_match(prediction: str, reference: str) -> bool:
    """Equal once whitespace is normalised."""
    return normalize_whitespace(prediction) == normalize_whitespace(reference)


def edit_similarity(prediction: str, reference: str) -> float:
    """1 - Levenshtein distance / the longer length, in 0..1 (1 for two empty strings).

    Compared after stripping the ends, so trailing newlines or indentation do
    not count against a completion.
    """
    a, b = prediction.strip(), reference.strip()
    if not a and not b:
        return 1.0
    return 1.0 - Levenshtein.distance(a, b) / max(len(a), len(b))


@dataclass(frozen=True)
class NextLine:
    """A cursor at the first non-blank character of a line, and the line's text from there."""

    offset: int
    expected: str


def next_lines(text: str) -> list[NextLine]:
    """The next-line cursors of a file: every line but the first with 4+ non-blank characters.

    The first line is left out (nothing precedes it to predict from), and so are
    lines too short to tell a model from a guess. `expected` is the line stripped
    of its indentation and trailing blanks (a CR of a CRLF file included).
    """
    found: list[NextLine] = []
    start = 0
    for n, line in enumerate(text.split("\n")):
        body = line.strip()
        if n > 0 and len(body) >= 4:
            indent = len(line) - len(line.lstrip(" \t"))
            found.append(NextLine(start + indent, body))
        start += len(line) + 1
    return found


def line_cut(text: str, offset: int) -> str:
    """`text` without what follows `offset` on its line (a CRLF's CR stays): the document
    as it is before the user writes the rest of that line. A FIM model given the whole
    file would find the expected text in its suffix, where the right answer is to add
    nothing; a prefix-only model never reads it."""
    end = text.find("\n", offset)
    end = len(text) if end < 0 else end
    if end > offset and text[end - 1] == "\r":
        end -= 1
    return text[:offset] + text[end:]


def next_line_exact_match(pairs: Iterable[tuple[str, str]]) -> float | None:
    """The share of (completed line, expected line) pairs that `exact_match`; None for none."""
    scores = [exact_match(prediction, expected) for prediction, expected in pairs]
    return sum(scores) / len(scores) if scores else None


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (q in 0..100, clamped) by linear interpolation between closest ranks.

    This is numpy's default ("linear", Hyndman-Fan type 7): the value at rank
    (n - 1) * q / 100 of the sorted data, interpolated between its neighbours, so
    p50 is the median. 0.0 for no values.
    """
    data = sorted(values)
    if not data:
        return 0.0
    position = (len(data) - 1) * min(max(q, 0.0), 100.0) / 100
    low = int(position)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (position - low))


Z95 = 1.959963984540054  # the standard normal's 97.5th percentile


def wilson_interval(successes: int, total: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a share `successes / total` (95% by default); None for
    no trials. Unlike the normal approximation it stays inside 0..1 and is honest for
    shares near 0 or 1 and for small samples."""
    if total <= 0:
        return None
    share = successes / total
    spread = z * z / total
    centre = (share + spread / 2) / (1 + spread)
    half = z * math.sqrt(share * (1 - share) / total + spread / (4 * total)) / (1 + spread)
    return max(0.0, centre - half), min(1.0, centre + half)
