"""Next-edit quality on a repository's newest commits: the scores of `codetailor eval --next-edit`.

Pure Python (no torch): `evaluate` runs any `NextEditPredictorLike` on the
examples `lsp_server.repo.history` mined from the held-out commits, and
`summarize` turns the answers into the figures, each share with its 95%
Wilson interval:
- `exact_match`: on windows where an edit is due, the window the predictor
  wrote equals the one the author wrote, whitespace aside (an answer of "no
  edit" counts as the current window, so it is wrong there); also by where the
  edit was relative to the cursor (`by_category`: below, above, at);
- `no_edit_accuracy`: the share of windows with nothing due that were
  answered with no edit (an answer with any edit, whitespace-only included,
  would have been shown, so it counts against);
- `shown_precision`: of the answers that carried an edit (the ones the editor
  would show), the share that wrote the expected window;
- `p50_ms`/`p95_ms`: wall-clock latency per request as the caller sees it;
  `tokens_per_forward`: generated tokens per model call (the drafting gain).

The figures are those of what the server shows, after its show-or-not gate
(lsp_server.completion.next_edit_gate). Every answer keeps the edit the gate
held back and the model's confidence in it, so `regated` applies any other
gate to the same answers offline: `ungated` (every edit the rewrite made) and
`gate_sweep` (a grid of gates) are paired comparisons, not other runs.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lsp_server.completion.next_edit import NextEditAnswer, NextEditPredictorLike
from lsp_server.completion.next_edit_gate import OPEN_GATE, ShowGate
from lsp_server.measure.quality.metrics import exact_match, percentile, wilson_interval
from lsp_server.repo.edit_examples import CATEGORIES, NextEditExample


@dataclass(frozen=True)
class Scored:
    """One example, the predictor's answer and its wall-clock latency."""

    example: NextEditExample
    answer: NextEditAnswer
    latency_ms: float

    @property
    def written(self) -> str:
        """The window as the predictor would leave it (the current one for no edit)."""
        if self.answer.edit is None or self.answer.updated is None:
            return self.example.request.window.current
        return self.answer.updated

    @property
    def shown(self) -> bool:
        """The answer carries an edit, so the editor would show it."""
        return self.answer.edit is not None and self.answer.updated is not None

    @property
    def exact(self) -> bool:
        """The written window is the expected one, whitespace aside."""
        return exact_match(self.written, self.example.expected)

    @property
    def right(self) -> bool:
        """A shown edit that was due and is the expected one."""
        return self.shown and self.example.edit_due and self.exact

    def regated(self, gate: ShowGate) -> Scored:
        """This answer as `gate` would have let it through (the same rewrite and edit)."""
        answer = self.answer
        edit, confidence = answer.edit or answer.withheld, answer.confidence
        if edit is None or confidence is None:
            return self
        if gate.shows(confidence):
            answer = replace(answer, edit=edit, withheld=None, stop_reason=confidence.stop_reason)
        else:
            answer = replace(answer, edit=None, withheld=edit, stop_reason="unsure")
        return Scored(self.example, answer, self.latency_ms)


def sample(
    examples: Sequence[NextEditExample], count: int | None, seed: int
) -> list[NextEditExample]:
    """`count` examples drawn with `seed` (all of them for None), in their mined order."""
    if count is None or count >= len(examples):
        return list(examples)
    chosen = set(random.Random(seed).sample(range(len(examples)), count))
    return [e for i, e in enumerate(examples) if i in chosen]


def evaluate(
    examples: Sequence[NextEditExample],
    predictor: NextEditPredictorLike,
    *,
    progress: Callable[[int], object] | None = None,
    time_budget: float | None = None,
) -> list[Scored]:
    """Ask `predictor` for every example's request, one at a time, timing each.

    Ctrl-C ends the run early with the examples scored so far (fewer than given),
    so a long evaluation can be cut short and still report; with none, it propagates.
    """
    scored: list[Scored] = []
    try:
        for example in examples:
            started = time.perf_counter()
            answer = predictor.predict(
                example.request, cancel=threading.Event(), time_budget=time_budget
            )
            scored.append(Scored(example, answer, (time.perf_counter() - started) * 1000))
            if progress:
                progress(1)
    except KeyboardInterrupt:
        if not scored:
            raise
    return scored


def share(hits: int, total: int) -> dict[str, Any]:
    """`{value, ci95, n}` for a share (None where there were no trials)."""
    interval = wilson_interval(hits, total)
    return {
        "value": round(hits / total, 4) if total else None,
        "ci95": [round(interval[0], 4), round(interval[1], 4)] if interval else None,
        "n": total,
    }


def summarize(scored: Sequence[Scored]) -> dict[str, Any]:
    """The figures of a next-edit evaluation (see the module docstring)."""
    due = [s for s in scored if s.example.edit_due]
    quiet = [s for s in scored if not s.example.edit_due]
    shown = [s for s in scored if s.shown]
    exact = share(sum(s.exact for s in due), len(due))
    no_edit = share(sum(not s.shown for s in quiet), len(quiet))
    precision = share(sum(s.right for s in shown), len(shown))
    by_category = {}
    for category in CATEGORIES:
        mine = [s for s in due if s.example.category == category]
        cell = share(sum(s.exact for s in mine), len(mine))
        by_category[category] = {
            "examples": len(mine),
            "exact_match": cell["value"],
            "exact_match_ci95": cell["ci95"],
        }
    latencies = [s.latency_ms for s in scored]
    generated = sum(s.answer.generated_tokens for s in scored)
    forwards = sum(s.answer.forwards for s in scored)
    return {
        "examples": len(scored),
        "edit_due": len(due),
        "no_edit_windows": len(quiet),
        "exact_match": exact["value"],
        "exact_match_ci95": exact["ci95"],
        "by_category": by_category,
        "no_edit_accuracy": no_edit["value"],
        "no_edit_accuracy_ci95": no_edit["ci95"],
        "shown": len(shown),
        "shown_precision": precision["value"],
        "shown_precision_ci95": precision["ci95"],
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "tokens_per_forward": round(generated / forwards, 3) if forwards else None,
        "prompt_tokens_mean": round(sum(s.answer.prompt_tokens for s in scored) / len(scored), 1)
        if scored
        else None,
        "stop_reasons": dict(Counter(s.answer.stop_reason for s in scored)),
    }


# The gates `gate_sweep` tries: the least probable changed-line token at least this
# probability (None: any), and at most this share of the window deleted.
SWEEP_PROBABILITIES = (None, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
SWEEP_DELETED_SHARES = (1.0, 0.5, 0.25, 0.1)


def with_gates(scored: Sequence[Scored], gate: ShowGate) -> dict[str, Any]:
    """`summarize` of the answers as served (through `gate`), with the same answers
    ungated and under each gate of the sweep."""
    summary = summarize(scored)
    summary["gate"] = _gate_json(gate)
    summary["ungated"] = _brief(summarize([s.regated(OPEN_GATE) for s in scored]))
    summary["gate_sweep"] = [
        _gate_json(g) | _brief(summarize([s.regated(g) for s in scored])) for g in sweep_gates()
    ]
    return summary


def sweep_gates() -> list[ShowGate]:
    return [
        ShowGate(None if p is None else math.log(p), share)
        for share in SWEEP_DELETED_SHARES
        for p in SWEEP_PROBABILITIES
    ]


def _gate_json(gate: ShowGate) -> dict[str, Any]:
    low = gate.min_logprob
    return {
        "min_token_probability": None if low is None else round(math.exp(low), 4),
        "max_deleted_share": gate.max_deleted_share,
    }


_BRIEF = (
    "exact_match",
    "exact_match_ci95",
    "no_edit_accuracy",
    "no_edit_accuracy_ci95",
    "shown",
    "shown_precision",
    "shown_precision_ci95",
)


def _brief(summary: dict[str, Any]) -> dict[str, Any]:
    """The figures a gate changes (latency and tokens do not change)."""
    return {key: summary[key] for key in _BRIEF} | {
        "by_category": {k: v["exact_match"] for k, v in summary["by_category"].items()}
    }
