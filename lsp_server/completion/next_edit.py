"""Next-edit suggestions: the plain values that cross the layers.

Besides completing at the cursor, the server predicts the edit the user will
make next near it. The model sees the file's recent edits and a window of lines
around the cursor, as it was before those edits and as it is now, and writes the
window as it will be; an output equal to the current window means "no edit".
The session builds a `NextEditRequest` from its edit history, an engine-side
predictor answers a `NextEditAnswer`, and the minimal `WindowEdit` (the common
prefix and suffix of the two windows trimmed) is what the editor shows.

These types are the contract between the session (edit history), the prompt
layout, the model side (the window rewrite) and `codetailor eval --next-edit`.
Pure: no pygls, no torch.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RecentEdit:
    """One recent change of a file: the changed lines' text before and after it."""

    path: str
    before: str
    after: str


@dataclass(frozen=True)
class EditWindow:
    """The lines around the cursor that the model may rewrite."""

    start_line: int  # 0-based document line of the window's first line
    original: str  # the window before the recent edits (git HEAD, or the text when opened)
    current: str  # the window now
    cursor: int  # the cursor's offset in `current`


@dataclass(frozen=True)
class NextEditRequest:
    """Everything the prompt is laid out from."""

    path: str
    history: tuple[RecentEdit, ...]
    window: EditWindow


@dataclass(frozen=True)
class WindowEdit:
    """One minimal replacement inside the current window: characters [start, end) become
    `text` (offsets in `EditWindow.current`)."""

    start: int
    end: int
    text: str


@dataclass(frozen=True)
class EditConfidence:
    """How sure the model was of one edit (lsp_server.completion.next_edit_gate measures it
    and decides from it). The log-probability fields are None where the engine gave no
    scores (the edit is then judged by its shape alone)."""

    min_logprob: float | None  # the least probable token of the changed lines
    mean_logprob: float | None  # their mean log-probability
    mean_entropy: float | None  # the mean entropy (nats) where they were chosen
    tokens: int  # how many tokens wrote the changed lines
    deleted_share: float  # the share of the window's characters the edit removes, net
    stop_reason: str  # how the rewrite ended ("stop": it lined up with the window again)

    def to_json(self) -> dict[str, Any]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class NextEditAnswer:
    """What the predictor made of a request."""

    updated: str | None  # the window as the model wrote it; None: nothing usable
    edit: WindowEdit | None  # the minimal edit; None: no edit
    stop_reason: str
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    forwards: int = 0  # model calls; generated_tokens / forwards is the drafting gain
    latency_ms: float = 0.0
    prefill_ms: float = 0.0  # of latency_ms, the prompt's prefill (the rest: decoding)
    # How sure the model was of the edit it wrote (None: it wrote none), and, when the
    # show-or-not gate held that edit back (stop reason "unsure"), the edit itself.
    confidence: EditConfidence | None = None
    withheld: WindowEdit | None = None


class NextEditPredictorLike(Protocol):
    """Writes the updated window for a request (`lsp_server.model` implements it)."""

    def predict(
        self,
        request: NextEditRequest,
        *,
        cancel: threading.Event | None = None,
        time_budget: float | None = None,
    ) -> NextEditAnswer: ...


def minimal_edit(current: str, updated: str) -> WindowEdit | None:
    """The one replacement that turns `current` into `updated`, with their common prefix
    and suffix trimmed; None when they are equal (no edit)."""
    if current == updated:
        return None
    limit = min(len(current), len(updated))
    start = 0
    while start < limit and current[start] == updated[start]:
        start += 1
    tail = 0
    while tail < limit - start and current[-1 - tail] == updated[-1 - tail]:
        tail += 1
    return WindowEdit(start, len(current) - tail, updated[start : len(updated) - tail])


def apply_edit(current: str, edit: WindowEdit | None) -> str:
    """`current` with `edit` made (unchanged for None)."""
    if edit is None:
        return current
    return current[: edit.start] + edit.text + current[edit.end :]
