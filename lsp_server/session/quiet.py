"""Show or stay quiet: the session's per-request decision on a finished suggestion.

`QuietGate` scores each suggestion the model offers with the repository's filter
(`lsp_server.quiet`: learned from its feedback log, or the global rule before it has
one) and shows it only when P(accept) reaches the threshold the `quietness` setting
states (the reward of lsp_server.quiet.filter.threshold). Completions (`decide`) and
next edits (`decide_edit`, which `NextEdits` asks) go through the same decision, each
kind with its own features, filter and history of outcomes. A small random share
(`explore`) of the suggestions it would hide is shown anyway, marked, so the next
learning sees what the filter hides and can weigh it back (inverse propensity:
each one counts 1 / explore). `record` logs the decision, score and features with
the suggestion (a `shown` event, or a `suppressed` one), and `quiet` is the empty
answer's reason.

It costs a feature vector and a few dot products or tree walks: microseconds,
on the event loop. The filter itself comes from a `QuietSourceLike` (the real one,
`lsp_server.quiet.store.FilterFile`, reloads the repository's file when it
changes). Pure: no I/O, no pygls, no torch.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from lsp_server.completion.next_edit import EditConfidence, EditWindow, WindowEdit
from lsp_server.quiet.edit_features import edit_features
from lsp_server.quiet.features import LOOK_AHEAD, LOOK_BACK, History, features
from lsp_server.quiet.filter import GLOBALS, NAMES, QuietFilter, Suggestions, threshold
from lsp_server.session.accepts import AcceptLedger
from lsp_server.session.documents import prompt_safe
from lsp_server.session.jobs import Request
from lsp_server.session.ports import (
    CompleterLike,
    CompletionLike,
    HostLike,
    RecordingLike,
    ShownAnswer,
)
from lsp_server.session.workspace import WorkspaceContext

EXPLORE = 0.05  # the share of the suggestions the filter would hide that is shown anyway


class QuietSourceLike(Protocol):
    """Where the session's filter comes from (`lsp_server.quiet.store.FilterFile`)."""

    def start(self, root: Path | None) -> None:
        """Use the filter of the repository at `root` (None: the global rule)."""
        ...

    def current(self, suggestions: Suggestions = "completion") -> QuietFilter | None:
        """The filter to apply to `suggestions` now; None: serve unfiltered (its file was
        refused)."""
        ...

    def status(self) -> dict[str, Any]: ...


class GlobalOnly:
    """A session without a repository's filter: the global rule, always."""

    def start(self, root: Path | None) -> None:
        return None

    def current(self, suggestions: Suggestions = "completion") -> QuietFilter | None:
        return GLOBALS[suggestions]

    def status(self) -> dict[str, Any]:
        return {"filter": "global", "nextEditFilter": "global", "path": None}


@dataclass(frozen=True)
class QuietDecision:
    """Whether a suggestion is shown, and why: what the log keeps of the decision."""

    show: bool
    score: float  # P(accept), as the filter says
    threshold: float
    filter: str  # "global" or "learned"
    explore: bool  # shown although below the threshold, for exploration
    p_show: float  # how likely it was to be shown: 1, or `explore` below the threshold
    features: tuple[float, ...]
    suggestions: Suggestions = "completion"  # the features' kind (their names: NAMES)

    def as_dict(self) -> dict[str, Any]:
        names = NAMES[self.suggestions]
        return {
            "show": self.show,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "filter": self.filter,
            "explore": self.explore,
            "p_show": self.p_show,
            "features": dict(zip(names, (round(v, 4) for v in self.features), strict=True)),
        }


def confidence(completion: object) -> tuple[Sequence[float], Sequence[float]]:
    """(log-probabilities, entropies) per generated token of a completion, () for each
    where its engine could not tell."""
    generation = getattr(completion, "generation", None)
    return getattr(generation, "logprobs", ()) or (), getattr(generation, "entropies", ()) or ()


def decide_with(
    quiet: QuietFilter, x: list[float], quietness: int, *, explore: float, rng: random.Random
) -> QuietDecision:
    """The decision on a suggestion with features `x`: shown when `quiet` scores it at the
    threshold of `quietness` or above, or, below it, when drawn (share `explore`) for
    exploration."""
    score, line = quiet.score(x), threshold(quietness)
    explored = score < line and rng.random() < explore
    show = score >= line or explored
    p_show = 1.0 if score >= line else explore
    return QuietDecision(
        show, score, line, quiet.name, explored, p_show, tuple(x), quiet.suggestions
    )


class QuietOwner(Protocol):
    """What `QuietGate` reads of its session."""

    workspace: WorkspaceContext
    host: HostLike
    recording: RecordingLike
    accepts: AcceptLedger


class QuietGate:
    """The session's filter, its history of outcomes, the log of its decisions, and the
    counts for the status."""

    def __init__(
        self,
        owner: QuietOwner,
        source: QuietSourceLike | None = None,
        *,
        explore: float = EXPLORE,
        rng: random.Random | None = None,
    ) -> None:
        self.owner = owner
        self.source: QuietSourceLike = source if source is not None else GlobalOnly()
        self.explore = explore
        self.rng = rng or random.Random()
        self.history = History()
        self.edit_history = History()  # the next edits' own: shown, accepted
        self.counts = {"scored": 0, "quiet": 0, "explored": 0}
        self.edit_counts = {"scored": 0, "quiet": 0, "explored": 0}

    def decide(
        self, request: Request, completion: CompletionLike, quietness: int
    ) -> QuietDecision | None:
        """Whether to show `completion` at the request's cursor; None when there is nothing
        to decide (an empty completion) or no filter applies (quietness 0, or a refused
        filter file): show it."""
        quiet = self.source.current() if quietness > 0 and completion.text else None
        if quiet is None:
            return None
        text, offset, uri = request.text, request.offset, request.uri
        logprobs, entropies = confidence(completion)
        x = features(
            text[max(0, offset - LOOK_BACK) : offset],
            text[offset : offset + LOOK_AHEAD],
            completion.text,
            request.language_id,
            history=self.history.rates(uri),
            logprobs=logprobs,
            entropies=entropies,
        )
        return self._decide(quiet, x, quietness, self.counts)

    def _decide(
        self, quiet: QuietFilter, x: list[float], quietness: int, counts: dict[str, int]
    ) -> QuietDecision:
        """`quiet`'s decision on features `x` at `quietness`, with exploration, counted."""
        decision = decide_with(quiet, x, quietness, explore=self.explore, rng=self.rng)
        counts["scored"] += 1
        counts["quiet"] += not decision.show
        counts["explored"] += decision.explore
        return decision

    def decide_edit(
        self,
        uri: str,
        window: EditWindow,
        edit: WindowEdit,
        confidence: EditConfidence | None,
        language: str | None,
        quietness: int,
    ) -> QuietDecision | None:
        """Whether to show next edit `edit` of `window` in `uri`; None when no filter
        applies (quietness 0, or a refused filter file): show it."""
        quiet = self.source.current("next_edit") if quietness > 0 else None
        if quiet is None:
            return None
        rates = self.edit_history.rates(uri)
        x = edit_features(window.current, window.cursor, edit, confidence, language, history=rates)
        return self._decide(quiet, x, quietness, self.edit_counts)

    def edit_shown(self, uri: str, id: str) -> None:
        """Next edit `id` is shown in `uri` (the one shown there before, untaken, was not)."""
        self.edit_history.shown(uri, id)

    def edit_accepted(self, id: object) -> None:
        if isinstance(id, str):
            self.edit_history.accepted(id)

    def record(
        self,
        request: Request,
        completion: CompletionLike,
        completer: CompleterLike | None,
        latency_ms: float,
        decision: QuietDecision | None,
    ) -> str | None:
        """The id of an answer shown, which its accept command carries back: the feedback
        log's where the log records it (off the event loop), else a new one. An answer the
        filter kept from the user (`decision`) is logged as such and has none; so has an
        empty one."""
        if not completion.text:
            return None
        owner, answer = self.owner, None
        if completer is not None and owner.workspace.in_workspace(request.uri):
            answer = ShownAnswer(
                uri=request.uri,
                path=owner.workspace.path_of(request.uri),
                language=request.language_id,
                text=prompt_safe(request.text),
                offset=request.offset,
                completion=completion,
                completer=completer,
                latency_ms=latency_ms,
                describe=owner.host.status,
                quiet=decision.as_dict() if decision is not None else None,
            )
        if decision is not None and not decision.show:
            if answer is not None:
                owner.recording.suppressed(answer)
            return None
        id = owner.accepts.shown(owner.recording.shown(answer) if answer is not None else None)
        self.history.shown(request.uri, id)
        return id

    def accepted(self, id: object) -> None:
        if isinstance(id, str):
            self.history.accepted(id)

    def status(self) -> dict[str, Any]:
        return self.source.status() | dict(self.counts) | {"nextEdits": dict(self.edit_counts)}
