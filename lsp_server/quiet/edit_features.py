"""What the show-or-stay-quiet filter looks at for a next edit: features that cost nothing.

`edit_features(...)` turns one next edit in its window into a fixed vector of floats,
named by `EDIT_FEATURES` (the order a stored next-edit filter's coefficients follow).
Everything it reads is in hand once the predictor has answered: the window as the model
saw it and the cursor in it, the minimal edit it would show (`WindowEdit`), the model's
confidence in the tokens that wrote the changed lines (`EditConfidence`: the least and
mean log-probability and the mean entropy; where the engine gave no scores `confident`
is 0 and the three are 0), the document's language, and what the user did with the last
next edits (`History.rates`, kept apart from the completions' history).

The session computes them per next edit and logs them with its decision; `feedback
learn` reads them back from the log's `next_edit_shown` events (an edit's features
cannot be rebuilt from the log alone: the model's confidence is not in it). Pure: no
I/O, no pygls, no torch.
"""

from __future__ import annotations

import math

from lsp_server.completion.next_edit import EditConfidence, WindowEdit
from lsp_server.quiet.features import CONFIG, MIN_TAKE, PRIOR_RATE, PROSE

EDIT_FEATURES: tuple[str, ...] = (
    "confident",  # 1: the engine gave per-token log-probabilities for the changed lines
    "min_logprob",  # the least probable token of the changed lines
    "mean_logprob",  # their mean log-probability
    "mean_entropy",  # the mean entropy (nats) of the distributions they were chosen from
    "tokens",  # log(1 + tokens that wrote the changed lines)
    "inserted_chars",  # log(1 + non-blank characters the edit writes)
    "removed_chars",  # log(1 + non-blank characters the edit removes)
    "lines_changed",  # lines the edit's range spans plus the lines it writes, at most 8
    "deletes_only",  # 1: it writes nothing
    "inserts_only",  # 1: it removes nothing
    "blank_only",  # 1: it changes nothing but whitespace
    "deleted_share",  # the share of the window's characters it removes, net
    "distance",  # log(1 + lines between the cursor's line and the edit's nearest line)
    "above",  # 1: the edit ends above the cursor's line
    "at_cursor",  # 1: the edit's range holds the cursor
    "ended",  # 1: the rewrite lined up with the window again (not cut off by an end token)
    "copies_window",  # 1: what it writes (MIN_TAKE+ non-blank characters) is in the window
    "prose",  # 1: a prose language (Markdown, reStructuredText, plain text)
    "config",  # 1: a configuration language (YAML, TOML, JSON, INI)
    "recent_rate",  # the session's next-edit acceptance over its last ones, with a prior
    "file_rate",  # the same for this document
    "since_accept",  # log(1 + next edits shown since the session's last accepted one)
)


def edit_features(
    current: str,
    cursor: int,
    edit: WindowEdit,
    confidence: EditConfidence | None,
    language: str | None,
    *,
    history: tuple[float, float, float] = (PRIOR_RATE, PRIOR_RATE, 0.0),
) -> list[float]:
    """The feature vector (in `EDIT_FEATURES` order) of `edit`, which replaces
    `current[edit.start:edit.end]` of the window `current` with `edit.text`, the cursor at
    offset `cursor` of the window; `history` is `History.rates(uri)` of next edits."""
    removed = current[edit.start : edit.end]
    wrote, gone = "".join(edit.text.split()), "".join(removed.split())
    first = current.count("\n", 0, edit.start)
    last = first + removed.count("\n")
    at = current.count("\n", 0, max(0, min(cursor, len(current))))
    gap = first - at if first > at else at - last if at > last else 0
    lang = (language or "").lower()
    scores = confidence is not None and confidence.min_logprob is not None
    return [
        float(scores),
        _known(confidence.min_logprob if confidence else None),
        _known(confidence.mean_logprob if confidence else None),
        _known(confidence.mean_entropy if confidence else None),
        math.log1p(confidence.tokens if confidence else 0),
        math.log1p(len(wrote)),
        math.log1p(len(gone)),
        float(min(removed.count("\n") + edit.text.count("\n") + 1, 8)),
        float(not edit.text),
        float(not removed),
        float(wrote == gone),
        confidence.deleted_share if confidence else _deleted(current, edit),
        math.log1p(gap),
        float(last < at),
        float(edit.start <= cursor <= edit.end),
        float(confidence is not None and confidence.stop_reason == "stop"),
        float(len(wrote) >= MIN_TAKE and edit.text.strip() in current),
        float(lang in PROSE),
        float(lang in CONFIG),
        *history,
    ]


def _known(value: float | None) -> float:
    return 0.0 if value is None else float(value)


def _deleted(current: str, edit: WindowEdit) -> float:
    """The net share of the window's characters `edit` removes."""
    removed = (edit.end - edit.start) - len(edit.text)
    return max(removed, 0) / len(current) if current else 0.0
