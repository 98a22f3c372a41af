"""Learn a repository's show-or-stay-quiet filters from its feedback log.

Two filters, one per kind of suggestion, by the same machinery: completions (`learn`,
from the log's `shown` events) and next edits (`learn_edits`, from its
`next_edit_shown` events: the features the server logged with each decision, since
an edit's confidence cannot be rebuilt from the log; an edit is accepted when its
accept command ran). What follows is said of completions and holds for both.

`examples` turns the log's shown suggestions into (features, accepted, weight):
the features the server logged with its decision where it did, else the same
`features()` rebuilt from the `shown` event, with the history folded through the
log in order exactly as the server feeds it (`History`). The weight undoes the
exploration: a suggestion shown only because it was drawn for exploration had a
probability `p_show` of being seen, so it stands for 1 / p_show of its kind
(inverse propensity weighting); suggestions the filter hid have no outcome and
are not examples.

`learn` compares two learners on a validation split of this log alone (its
latest `VALIDATION` share, so the validation suggestions come after the ones
learned from, as a user's next ones do): logistic regression on standardised
features and gradient-boosted trees (scikit-learn), by the reward their decisions
earn there at the default quietness (what the filter is for; weighted log loss
breaks a tie). The winner is refitted on the whole log and calibrated by Platt
scaling on out-of-fold scores (time-ordered folds), then stored as plain numbers
(`QuietFilter`); the server scores it in pure Python. `learn_for_repo` stores it
only where it earns more on the validation part than the global rule does (like
`finetune`'s gate; `force` stores it anyway). No held-out file of any repository
is looked at.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.feedback.suggestions import NextEditRecord, SuggestionRecord
from lsp_server.quiet.features import FEATURES, History, features
from lsp_server.quiet.filter import (
    DEFAULT_QUIETNESS,
    GLOBALS,
    NAMES,
    QuietFilter,
    QuietFilters,
    Suggestions,
    Tree,
    threshold,
)

VALIDATION = 0.25  # the latest share of the log the two learners are compared on
MIN_EXAMPLES = 40
MIN_EACH = 8  # accepted and not accepted suggestions, at least
FOLDS = 5
TREES = {"n_estimators": 60, "max_depth": 3, "learning_rate": 0.1, "subsample": 0.8}
LEARNERS = ("logistic", "trees")
# DEFAULT_QUIETNESS (the setting's default) is the threshold the learners are judged at.
ACCEPT, REJECT = 0.75, -0.25  # the reward that threshold comes from (filter.threshold)


@dataclass(frozen=True)
class Examples:
    """The log as a learner sees it, oldest first."""

    x: list[list[float]]
    y: list[int]
    weight: list[float]
    logged: int  # examples whose features the server logged (the rest were rebuilt)
    suggestions: Suggestions = "completion"


def _logged(
    quiet: dict[str, Any] | None, names: Sequence[str] = FEATURES
) -> tuple[list[float] | None, float]:
    """(the features the server logged with a decision `quiet`, p_show)."""
    quiet = quiet or {}
    p_show = quiet.get("p_show")
    p = float(p_show) if isinstance(p_show, (int, float)) and p_show > 0 else 1.0
    logged = quiet.get("features")
    if isinstance(logged, dict) and all(isinstance(logged.get(n), (int, float)) for n in names):
        return [float(logged[n]) for n in names], p
    return None, p


def edit_examples(records: Sequence[NextEditRecord]) -> Examples:
    """The next edits of a log (oldest first) that were shown with their features logged,
    as examples (the others cannot be rebuilt: the model's confidence is not in the log)."""
    x: list[list[float]] = []
    y: list[int] = []
    weight: list[float] = []
    for r in records:
        vector, p_show = _logged(r.shown.quiet, NAMES["next_edit"])
        if vector is not None:
            x.append(vector)
            y.append(int(r.was_accepted))
            weight.append(1.0 / p_show)
    return Examples(x, y, weight, len(y), "next_edit")


def examples(records: Sequence[SuggestionRecord]) -> Examples:
    """The shown suggestions of a log (oldest first) as examples."""
    history = History()
    x: list[list[float]] = []
    y: list[int] = []
    weight: list[float] = []
    logged = 0
    for r in records:
        s = r.shown
        vector, p_show = _logged(s.quiet)
        if vector is None:
            vector = features(
                s.prefix, s.suffix, s.suggestion, s.language, history=history.rates(s.uri)
            )
        else:
            logged += 1
        history.shown(s.uri, r.id)
        if r.was_accepted:
            history.accepted(r.id)
        x.append(vector)
        y.append(int(r.was_accepted))
        weight.append(1.0 / p_show)
    return Examples(x, y, weight, logged)


def _check(data: Examples) -> None:
    accepted = sum(data.y)
    if len(data.y) < MIN_EXAMPLES or min(accepted, len(data.y) - accepted) < MIN_EACH:
        edits = data.suggestions == "next_edit"
        what = "next edits shown with their features" if edits else "shown suggestions"
        use = "next edits" if edits else "completions"
        flag = " --next-edit" if edits else ""
        raise CodetailorError(
            f"the feedback log holds {len(data.y)} {what}, {accepted} accepted: "
            f"a filter needs at least {MIN_EXAMPLES}, with {MIN_EACH} accepted and {MIN_EACH} "
            f"not; keep using {use} (or `codetailor bench simulate REPO{flag} --split train "
            "--record`) and learn again"
        )


def _candidates(seed: int) -> dict[str, Any]:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)),
        "trees": GradientBoostingClassifier(random_state=seed, **TREES),
    }


def _fit(model: Any, x: Any, y: Any, w: Any) -> Any:
    name = "logisticregression__sample_weight" if hasattr(model, "steps") else "sample_weight"
    return model.fit(x, y, **{name: w})


def _log_loss(p: Sequence[float], y: Sequence[int], w: Sequence[float]) -> float:
    eps = 1e-6
    total = sum(
        -wi * math.log(max(pi, eps) if yi else max(1 - pi, eps))
        for pi, yi, wi in zip(p, y, w, strict=True)
    )
    return total / sum(w)


def _reward(shown: Any, y: Any, w: Any) -> float:
    """The stated reward of showing `shown` (a mask), weighted: ACCEPT / REJECT / 0."""
    outcomes = zip(shown, y, w, strict=True)
    return float(sum(wi * (ACCEPT if yi else REJECT) for s, yi, wi in outcomes if s))


def compare(data: Examples, seed: int = 0) -> dict[str, dict[str, float]]:
    """Each learner fitted on the earlier part of the log, judged on its latest
    VALIDATION share: the reward its decisions earn there at the default quietness,
    and its weighted log loss; beside them, what showing everything and what the
    global rule earn on the same suggestions."""
    import numpy as np

    x, y, w = np.array(data.x), np.array(data.y), np.array(data.weight)
    cut = int(len(y) * (1 - VALIDATION))
    if len(set(y[:cut])) < 2:
        raise CodetailorError("the earlier part of the log holds one outcome only")
    line = threshold(DEFAULT_QUIETNESS)
    out: dict[str, dict[str, float]] = {}
    for name, model in _candidates(seed).items():
        p = _fit(model, x[:cut], y[:cut], w[:cut]).predict_proba(x[cut:])[:, 1]
        out[name] = {
            "reward": round(_reward(p >= line, y[cut:], w[cut:]), 2),
            "log_loss": round(_log_loss(list(p), list(y[cut:]), list(w[cut:])), 4),
            "shown": int((p >= line).sum()),
        }
    rule = [GLOBALS[data.suggestions].score(v) >= line for v in x[cut:]]
    out["global"] = {"reward": round(_reward(rule, y[cut:], w[cut:]), 2), "shown": sum(rule)}
    out["everything"] = {"reward": round(_reward([True] * len(rule), y[cut:], w[cut:]), 2)}
    for figures in out.values():
        figures["validation"] = int(len(y) - cut)
    return out


def export(name: str, model: Any, suggestions: Suggestions = "completion") -> QuietFilter:
    """A fitted scikit-learn model as plain numbers (not yet calibrated), for `suggestions`."""
    names = NAMES[suggestions]
    if name == "logistic":
        scaler, lr = model.steps[0][1], model.steps[-1][1]
        scale = [float(s) if s > 0 else 1.0 for s in scaler.scale_]
        return QuietFilter(
            "logistic",
            mean=tuple(float(m) for m in scaler.mean_),
            scale=tuple(scale),
            weights=tuple(float(c) for c in lr.coef_[0]),
            intercept=float(lr.intercept_[0]),
            features=names,
            suggestions=suggestions,
        )
    trees = tuple(_tree(est.tree_) for est in model.estimators_[:, 0])
    rate = float(model.learning_rate)
    probe = [[0.0] * len(names)]
    # The prior's log-odds, read off the model itself rather than its private init.
    init = float(model.decision_function(probe)[0]) - rate * sum(t.predict(probe[0]) for t in trees)
    return QuietFilter(
        "trees",
        trees=trees,
        learning_rate=rate,
        init=init,
        features=names,
        suggestions=suggestions,
    )


def _tree(tree: Any) -> Tree:
    return Tree(
        feature=tuple(int(max(f, 0)) for f in tree.feature),
        threshold=tuple(float(t) for t in tree.threshold),
        left=tuple(int(v) for v in tree.children_left),
        right=tuple(int(v) for v in tree.children_right),
        value=tuple(float(v) for v in tree.value[:, 0, 0]),
    )


def calibrate(name: str, data: Examples, seed: int) -> tuple[float, float]:
    """Platt scaling (a, c) of the learner's raw score, from out-of-fold scores over
    time-ordered folds, so no suggestion is scored by a model that learned it."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    x, y, w = np.array(data.x), np.array(data.y), np.array(data.weight)
    raw = np.zeros(len(y))
    bounds = np.linspace(0, len(y), FOLDS + 1).astype(int)
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        rest = np.r_[0:lo, hi : len(y)]
        if len(set(y[rest])) < 2:
            raw[lo:hi] = 0.0
            continue
        model = _fit(_candidates(seed)[name], x[rest], y[rest], w[rest])
        flat = export(name, model, data.suggestions)
        raw[lo:hi] = [flat.raw(v) for v in x[lo:hi]]
    platt = LogisticRegression(C=1e6, max_iter=1000).fit(raw.reshape(-1, 1), y, sample_weight=w)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def learn(records: Sequence[SuggestionRecord], seed: int = 0) -> QuietFilter:
    """The completion filter of a log's suggestions (oldest first); CodetailorError (one
    line) when the log is too small to learn from."""
    return learn_from(examples(records), seed)


def learn_edits(records: Sequence[NextEditRecord], seed: int = 0) -> QuietFilter:
    """The next-edit filter of a log's next edits (oldest first); CodetailorError (one
    line) when the log is too small to learn from."""
    return learn_from(edit_examples(records), seed)


def learn_from(data: Examples, seed: int = 0) -> QuietFilter:
    """The filter of `data`'s kind of suggestion, learned from its examples."""
    import numpy as np

    _check(data)
    scores = compare(data, seed)
    winner = max(LEARNERS, key=lambda n: (scores[n]["reward"], -scores[n]["log_loss"]))
    model = _fit(_candidates(seed)[winner], np.array(data.x), np.array(data.y), data.weight)
    flat = export(winner, model, data.suggestions)
    accepted = sum(data.y)
    learned = {
        "learner": winner,
        "validation": scores,
        # Stored only where it earns more than the global rule on the validation part.
        "beats_global": scores[winner]["reward"] > scores["global"]["reward"],
        "examples": len(data.y),
        "accepted": accepted,
        "logged_features": data.logged,
        "explored": sum(w > 1 for w in data.weight),
        "seed": seed,
    }
    calibration = calibrate(winner, data, seed)
    return replace(flat, calibration=calibration, learned=learned)


def learn_for_repo(
    repo: Path, folder: Path, *, source: str | None = None, seed: int = 0, force: bool = False
) -> dict[str, Any]:
    """Learn the filters of the repository at `repo` from its log at `folder` (one for
    completions, one for next edits) and store them beside the log (`quiet.json`), where
    its server picks them up, each where it beats its global rule on the log's validation
    part (or `force`); a kind that cannot be learned, or is not kept, keeps the filter the
    file held for it. The report: the completions' figures at the top level (or `error`:
    why none was learned), the next edits' under `next_edit`; `stored` says which were
    written. CodetailorError (one line) when neither kind can be learned."""
    from lsp_server.feedback.log import read_events
    from lsp_server.feedback.suggestions import next_edit_records, suggestion_records
    from lsp_server.quiet.store import FILTER, read_filter, write_filter

    events = read_events(folder)
    completions = suggestion_records(events)
    if source is not None:
        completions = [r for r in completions if r.shown.source == source]
    path = folder / FILTER
    edits = next_edit_records(events, source)
    learned: dict[str, QuietFilter] = {}
    reports: dict[str, dict[str, Any]] = {}
    for kind, learn_kind in (
        ("completion", lambda: learn(completions, seed)),
        ("next_edit", lambda: learn_edits(edits, seed)),
    ):
        try:
            quiet = learn_kind()
        except CodetailorError as exc:
            reports[kind] = {"error": str(exc), "stored": False}
            continue
        stored = force or bool(quiet.learned["beats_global"])
        reports[kind] = quiet.learned | {"stored": stored}
        if stored:
            learned[kind] = quiet
    if all("error" in r for r in reports.values()):
        why = reports["completion"]["error"]
        raise CodetailorError(why + (f"; {reports['next_edit']['error']}" if edits else ""))
    if learned:
        try:
            kept = read_filter(path) if path.exists() else QuietFilters()
        except CodetailorError:  # a refused file is replaced by what was learned
            kept = QuietFilters()
        write_filter(path, replace(kept, **learned))
    place = {"repo": str(repo.resolve()), "path": str(path)}
    return reports["completion"] | place | {"next_edit": reports["next_edit"] | place}
