"""The stored show-or-stay-quiet filters: their JSON contract, their scoring, the threshold.

A filter maps a suggestion's features to the probability that the user accepts it; a
repository has one per kind of suggestion it learned (`completion`: the features of
`lsp_server.quiet.features.FEATURES`; `next_edit`: those of
`lsp_server.quiet.edit_features.EDIT_FEATURES`). Stored as one JSON object
(`quiet.json`, beside the repository's feedback log; see `lsp_server.quiet.store`),
one section per kind learned (`QuietFilters`):

    {"format": "codetailor.quiet", "v": 2,
     "completion": FILTER, "next_edit": FILTER}   # either may be absent
    FILTER = {"kind": "logistic" | "trees",
     "features": [...names...], "mean": [...], "scale": [...],   # standardisation
     "weights": [...], "intercept": b,                            # kind "logistic"
     "trees": [{"feature": [...], "threshold": [...], "left": [...], "right": [...],
                "value": [...]}], "learning_rate": r, "init": b0,  # kind "trees"
     "calibration": [a, c],   # P(accept) = sigmoid(a * raw + c) (Platt scaling)
     "learned": {...}}        # how it was learned: log, learner, validation figures

Version 1 (one completion filter, its fields at the top level) is still read. A kind
without a section is judged by its global rule.

`QuietFilter.score` is pure Python over a list of floats, a few microseconds; the server
never imports scikit-learn. `from_json` refuses, with one line (a ValueError), anything
that is not such an object: not JSON, another format, a newer version, a feature this
codetailor does not compute for that kind, lengths that do not match.

`threshold(quietness)` is where the reward puts the line: with a shown suggestion worth
`1 - q` when accepted and `-q` when not, and silence worth 0, showing pays iff
P(accept) >= q. The `quietness` setting is q in percent; 25 is Cursor Tab's reward
(0.75 / -0.25 / 0).

`GLOBAL` (completions) and `GLOBAL_NEXT_EDIT` are the starting points before a
repository has a filter of its own: fixed rules on the same features (see `global_score`
and `edit_global_score`). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from lsp_server.completion.next_edit_gate import DEFAULT_GATE
from lsp_server.quiet.edit_features import EDIT_FEATURES
from lsp_server.quiet.features import FEATURES

FORMAT = "codetailor.quiet"
SCHEMA_VERSION = 2
Kind = Literal["logistic", "trees", "global"]
Suggestions = Literal["completion", "next_edit"]
SUGGESTIONS: tuple[Suggestions, ...] = ("completion", "next_edit")
NAMES: dict[str, tuple[str, ...]] = {"completion": FEATURES, "next_edit": EDIT_FEATURES}
_INDEXES = {kind: {name: i for i, name in enumerate(names)} for kind, names in NAMES.items()}
_INDEX = _INDEXES["completion"]
_EDIT = _INDEXES["next_edit"]


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
    """A learned filter (or a global rule) of one kind of suggestion: P(accept) of a
    feature vector (in the order `NAMES[suggestions]` gives)."""

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
    suggestions: Suggestions = "completion"

    @property
    def name(self) -> str:
        """ "global" for the starting rule, "learned" for a repository's own filter."""
        return "global" if self.kind == "global" else "learned"

    def raw(self, x: Sequence[float]) -> float:
        """The learner's own score (log-odds before calibration) of `x`."""
        if self.kind == "global":
            return self.score(x)
        index = _INDEXES[self.suggestions]
        v = [x[index[name]] for name in self.features]
        if self.mean:
            v = [(a - m) / s for a, m, s in zip(v, self.mean, self.scale, strict=True)]
        if self.kind == "logistic":
            return self.intercept + sum(w * a for w, a in zip(self.weights, v, strict=True))
        return self.init + self.learning_rate * sum(t.predict(v) for t in self.trees)

    def score(self, x: Sequence[float]) -> float:
        """P(accept) of the suggestion whose features are `x`."""
        if self.kind == "global":
            return global_score(x) if self.suggestions == "completion" else edit_global_score(x)
        a, c = self.calibration
        return sigmoid(a * self.raw(x) + c)

    def to_dict(self) -> dict[str, Any]:
        """This filter's section of the stored file."""
        body: dict[str, Any] = {
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
        return body | {"learned": self.learned}

    def to_json(self) -> str:
        """A file holding this filter alone (in its kind's section)."""
        return QuietFilters.of(self).to_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> QuietFilter:
        """The completion filter of a stored file, else its next-edit one; ValueError with
        one line saying why it is refused (or holds none)."""
        filters = QuietFilters.from_json(text)
        quiet = filters.completion or filters.next_edit
        if quiet is None:
            raise ValueError("the file holds no filter")
        return quiet


@dataclass(frozen=True)
class QuietFilters:
    """What a repository's filter file holds: a learned filter per kind of suggestion
    (None: that kind has none, and its global rule applies)."""

    completion: QuietFilter | None = None
    next_edit: QuietFilter | None = None

    @staticmethod
    def of(*filters: QuietFilter) -> QuietFilters:
        """The file holding these filters, each in its kind's section."""
        return QuietFilters(**{f.suggestions: f for f in filters})

    def learned(self, suggestions: Suggestions) -> QuietFilter | None:
        return self.completion if suggestions == "completion" else self.next_edit

    def for_(self, suggestions: Suggestions) -> QuietFilter:
        """The filter that decides `suggestions`: the learned one, else the global rule."""
        return self.learned(suggestions) or GLOBALS[suggestions]

    def to_json(self) -> str:
        body: dict[str, Any] = {"format": FORMAT, "v": SCHEMA_VERSION}
        for kind in SUGGESTIONS:
            quiet = self.learned(kind)
            if quiet is not None:
                body[kind] = quiet.to_dict()
        return json.dumps(body, indent=1)

    @classmethod
    def from_json(cls, text: str | bytes) -> QuietFilters:
        """Parse a stored file; ValueError with one line saying why it is refused."""
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
        if version < 2:  # one completion filter, its fields at the top level
            return cls(completion=_section(raw, "completion"))
        sections = {k: _section(raw[k], k) for k in SUGGESTIONS if raw.get(k) is not None}
        return cls(**sections)


def _section(raw: Any, suggestions: Suggestions) -> QuietFilter:
    """One filter's section, for `suggestions`; ValueError with one line if malformed."""
    if not isinstance(raw, dict):
        raise ValueError(f"malformed filter: the {suggestions} section is not an object")
    try:
        return _parse(raw, suggestions)
    except (TypeError, KeyError, ValueError, IndexError) as exc:
        prefix = "" if suggestions == "completion" else f"{suggestions}: "
        raise ValueError(f"malformed filter: {prefix}{exc}") from None


def _floats(raw: Any, n: int | None = None) -> tuple[float, ...]:
    values = tuple(float(v) for v in raw)
    if n is not None and len(values) != n:
        raise ValueError(f"expected {n} numbers, got {len(values)}")
    if not all(math.isfinite(v) for v in values):
        raise ValueError("numbers must be finite")
    return values


def _parse(raw: dict[str, Any], suggestions: Suggestions) -> QuietFilter:
    names = tuple(str(n) for n in raw["features"])
    unknown = [n for n in names if n not in _INDEXES[suggestions]]
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
        "suggestions": suggestions,
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


DEFAULT_QUIETNESS = 25  # the setting's default (Cursor Tab's reward's break-even)


def edit_global_score(x: Sequence[float]) -> float:
    """The starting point for next edits before a repository has a filter of its own: the
    show-or-not gate chosen on a third repository's history (pallets/flask; see
    `lsp_server.completion.next_edit_gate.DEFAULT_GATE`), put on the quietness scale.

    The gate shows an edit when every token of its changed lines had p >= 0.4 (and it
    deletes at most a tenth of the window); the score is the least probable one's p,
    scaled so that this point lands on the default quietness's threshold (p = 0.4 scores
    0.25): at the default quietness the rule is the gate exactly, a higher quietness
    asks for a surer edit, a lower one shows more. It is not a probability of acceptance
    (the base model's edits are rarely right, whatever their p); it is the flask-chosen
    ordering of edits by the model's own confidence, and nothing here comes from the
    evaluation repositories. An edit the engine gave no scores for scores
    UNKNOWN_CONFIDENCE (shown at the default quietness, as the gate shows it), and one
    that deletes more of the window than the gate allows scores 0.
    """
    if x[_EDIT["deleted_share"]] > DEFAULT_GATE.max_deleted_share:
        return 0.0
    if not x[_EDIT["confident"]] or DEFAULT_GATE.min_logprob is None:
        return UNKNOWN_CONFIDENCE
    lowest = min(x[_EDIT["min_logprob"]], 0.0)
    scale = threshold(DEFAULT_QUIETNESS) / math.exp(DEFAULT_GATE.min_logprob)
    return min(math.exp(lowest) * scale, 1.0)


GLOBAL_NEXT_EDIT = QuietFilter(
    "global",
    features=EDIT_FEATURES,
    learned={"rule": "edit_global_score"},
    suggestions="next_edit",
)
GLOBALS: dict[str, QuietFilter] = {"completion": GLOBAL, "next_edit": GLOBAL_NEXT_EDIT}
