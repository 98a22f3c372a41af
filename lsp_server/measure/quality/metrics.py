"""Exact match and edit similarity, as CrossCodeEval and RepoBench score completions."""

from __future__ import annotations

import re
from collections.abc import Iterable

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


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile (0..100), interpolating linearly; 0.0 for no values."""
    data = sorted(values)
    if not data:
        return 0.0
    position = (len(data) - 1) * min(max(q, 0.0), 100.0) / 100
    low = int(position)
    high = min(low + 1, len(data) - 1)
    return float(data[low] + (data[high] - data[low]) * (position - low))
