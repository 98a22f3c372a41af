"""The stored show-or-stay-quiet filter: its JSON contract, its scoring, its threshold.

A filter maps a suggestion's features (`lsp_server.quiet.features.FEATURES`) to the
probability that the user accepts it. Stored as one JSON object (`quiet.json`, beside
the repository's feedback log; see `lsp_server.quiet.store`):

    {"format": "codetailor.quiet", "v": 1, "kind": "logistic" | "trees",
     "features": [...names...], "mean": [...], "scale": [...],   # standardisation
     "weights": [...], "intercept": b,                            # kind "logistic"
     "trees": [{"feature": [...], "threshold": [...], "left": [...], "right": [...],
                "value": [...]}], "learning_rate": r, "init": b0,  # kind "trees"
     "calibration": [a, c],   # P(accept) = sigmoid(a * raw + c) (Platt scaling)
     "learned": {...}}        # how it was learned: log, learner, validation figures

`QuietFilter.score` is pure Python over a list of floats, a few microseconds; the server
never imports scikit-learn. `from_json` refuses, with one line (a ValueError), anything
that is not such an object: not JSON, another format, a newer version, a feature this
codetailor does not compute, lengths that do not match.

`threshold(quietness)` is where the reward puts the line: with a shown suggestion worth
`1 - q` when accepted and `-q` when not, and silence worth 0, showing pays iff
P(accept) >= q. The `quietness` setting is q in percent; 25 is Cursor Tab's reward
(0.75 / -0.25 / 0).

`GLOBAL` is the starting point before a repository has a filter of its own: a fixed rule
on the same features (see `global_score`). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lsp_server.quiet.features import FEATURES

FORMAT = "codetailor.quiet"
SCHEMA_VERSION = 1
Kind = Literal["logistic", "trees", "global"]
_INDEX = {name: i for i, name in enumerate(FEATURES)}


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


def threshold(quietness: int) -> float:
    """The P(accept) below which a suggestion is not shown, for `quietness` percent."""
    return max(0, min(quietness, 100)) / 100


@dataclass(frozen=True)
class Tree:
    """One regression tree, as scikit-learn's `tree_` arrays: node i splits on
    `feature[i] <= threshold[i]` (left) or not (right); a leaf has left == -1."""

    feature: tuple[int, ...]
    threshold: tuple[float, ...]
    left: tuple[int, ...]
    right: tuple[int, ...]
    value: tuple[float, ...]

    def predict(self, x: Sequence[float]) -> float:
        node = 0
        while self.left[node] != -1:
            node = (
                self.left[node]
                if x[self.feature[node]] <= self.threshold[node]
                else self.right[node]
            )
        return self.value[node]

    def to_dict(self) -> dict[str, list[Any]]:
        return {
            "feature": list(self.feature),
            "threshold": list(self.threshold),
            "left": list(self.left),
            "right": list(self.right),
            "value": list(self.value),
        }


@dataclass(frozen=True)
class QuietFilter:
    """A learned filter (or the global rule): P(accept) of a feature vector."""

    kind: Kind
    features: tuple[str, ...] = FEATURES
    mean: tuple[float, ...] = ()
    scale: tuple[float, ...] = ()
    weights: tuple[float, ...] = ()
    intercept: float = 0.0
    trees: tuple[Tree, ...] = ()
    learning_rate: float = 0.1
    init: float = 0.0
    calibration: tuple[float, float] = (1.0, 0.0)
    learned: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """ "global" for the starting rule, "learned" for a repository's own filter."""
        return "global" if self.kind == "global" else "learned"

    def raw(self, x: Sequence[float]) -> float:
        """The learner's own score (log-odds before calibration) of `x` in FEATURES order."""
        if self.kind == "global":
            return global_score(x)
        v = [x[_INDEX[name]] for name in self.features]
        if self.mean:
            v = [(a - m) / s for a, m, s in zip(v, self.mean, self.scale, strict=True)]
        if self.kind == "logistic":
            return self.intercept + sum(w * a for w, a in zip(self.weights, v, strict=True))
        return self.init + self.learning_rate * sum(t.predict(v) for t in self.trees)

    def score(self, x: Sequence[float]) -> float:
        """P(accept) of the suggestion whose features are `x`."""
        if self.kind == "global":
            return global_score(x)
        a, c = self.calibration
        return sigmoid(a * self.raw(x) + c)

    def to_json(self) -> str:
        body: dict[str, Any] = {
            "format": FORMAT,
            "v": SCHEMA_VERSION,
            "kind": self.kind,
            "features": list(self.features),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "calibration": list(self.calibration),
        }
        if self.kind == "logistic":
            body |= {"weights": list(self.weights), "intercept": self.intercept}
        elif self.kind == "trees":
            body |= {
                "trees": [t.to_dict() for t in self.trees],
                "learning_rate": self.learning_rate,
                "init": self.init,
            }
        return json.dumps(body | {"learned": self.learned}, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> QuietFilter:
        """Parse a stored filter; ValueError with one line saying why it is refused."""
        try:
            raw = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError(f"not JSON ({exc})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            raise ValueError(f'not a codetailor quiet filter (no "format": "{FORMAT}")')
        version = raw.get("v")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ValueError(
                f"filter version {version!r} is not one this codetailor reads "
                f"(up to {SCHEMA_VERSION}); learn it again or upgrade"
            )
        try:
            return _parse(raw)
        except (TypeError, KeyError, ValueError, IndexError) as exc:
            raise ValueError(f"malformed filter: {exc}") from None


def _floats(raw: Any, n: int | None = None) -> tuple[float, ...]:
    values = tuple(float(v) for v in raw)
    if n is not None and len(values) != n:
        raise ValueError(f"expected {n} numbers, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("numbers must be finite")
    return values


def _parse(raw: dict[str, Any]) -> QuietFilter:
    names = tuple(str(n) for n in raw["features"])
    unknown = [n for n in names if n not in _INDEX]
    if unknown:
        raise ValueError(f"features this codetailor does not compute: {', '.join(unknown)}")
    kind = raw["kind"]
    n = len(names)
    mean = _floats(raw.get("mean") or ())
    scale = _floats(raw.get("scale") or ())
    if mean and (len(mean) != n or len(scale) != n or min(scale) <= 0):
        raise ValueError("mean and scale must hold one positive scale per feature")
    a, c = _floats(raw.get("calibration") or (1.0, 0.0), 2)
    common: dict[str, Any] = {
        "features": names,
        "mean": mean,
        "scale": scale,
        "calibration": (a, c),
        "learned": dict(raw.get("learned") or {}),
    }
    if kind == "logistic":
        weights = _floats(raw["weights"], n)
        return QuietFilter("logistic", weights=weights, intercept=float(raw["intercept"]), **common)
    if kind != "trees":
        raise ValueError(f"unknown kind {kind!r}")
    trees = tuple(_tree(t, n) for t in raw["trees"])
    rate, init = _floats([raw["learning_rate"], raw["init"]], 2)
    return QuietFilter("trees", trees=trees, learning_rate=rate, init=init, **common)


def _tree(raw: dict[str, Any], n: int) -> Tree:
    feature = tuple(int(v) for v in raw["feature"])
    left, right = tuple(int(v) for v in raw["left"]), tuple(int(v) for v in raw["right"])
    size = len(feature)
    tree = Tree(feature, _floats(raw["threshold"], size), left, right, _floats(raw["value"], size))
    if not size or len(left) != size or len(right) != size:
        raise ValueError("a tree's arrays must be non-empty and of one length")
    for i in range(size):  # every split names a feature and children further down the arrays
        if left[i] != -1 and not (
            0 <= feature[i] < n and i < left[i] < size and i < right[i] < size
        ):
            raise ValueError(f"tree node {i} points outside the tree")
    return tree


# -- the global starting point --------------------------------------------------------------

UNKNOWN_CONFIDENCE = 0.5  # P(accept) the global rule gives when it has nothing to go on


def global_score(x: Sequence[float]) -> float:
    """The starting point before a repository has a filter: a fixed rule, not learned.

    Two kinds of suggestion are hardly ever worth a look, in any repository, so they
    score 0: one without a single letter or digit (a lone `)` or `],`, quicker typed than
    read) and a copy of one of the 5 lines just above the cursor (the loop a small model
    falls into). Otherwise, where the engine gave per-token log-probabilities, the model's
    own probability of its text per token (the geometric mean, exp(mean_logprob)) stands
    for P(accept); where it did not, UNKNOWN_CONFIDENCE, which shows the suggestion at the
    default quietness. Nothing here comes from any repository's log or held-out files.
    """
    if not x[_INDEX["alnum_share"]] or x[_INDEX["repeats_above"]]:
        return 0.0
    if x[_INDEX["confident"]]:
        return math.exp(min(x[_INDEX["mean_logprob"]], 0.0))
    return UNKNOWN_CONFIDENCE


GLOBAL = QuietFilter("global", learned={"rule": "global_score"})
