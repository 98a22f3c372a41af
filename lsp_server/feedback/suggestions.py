"""The log read as suggestions: each shown one with everything that became of it.

`read_suggestions` is what every consumer of the log calls (`codetailor feedback
stats`, `finetune --feedback`, the preference sweep): the events folded into one
`SuggestionRecord` per shown suggestion, optionally of one source only.
`next_edit_records` does the same for the next edits shown (`NextEditRecord`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from lsp_server.feedback.events import (
    Accepted,
    Dismissed,
    FeedbackEvent,
    NextEditShown,
    Retained,
    Shown,
    Superseded,
    Typed,
    TypedThrough,
)
from lsp_server.feedback.log import read_events


@dataclass
class SuggestionRecord:
    """A shown suggestion with everything the log says became of it."""

    id: str
    shown: Shown
    accepted: list[str] = field(default_factory=list)  # kinds, in order
    typed_chars: int = 0
    superseded: bool = False
    dismissed: bool = False
    retained: dict[str, bool] = field(default_factory=dict)  # "retained_30s" -> kept
    typed: str | None = None  # what the document then said at the place, to the line's end

    @property
    def time(self) -> float:
        return self.shown.t

    @property
    def suggestion(self) -> str:
        return self.shown.suggestion

    @property
    def was_accepted(self) -> bool:
        """Accepted in full, in part, or typed through to its end."""
        typed_all = self.typed_chars >= len(self.suggestion.rstrip()) > 0
        return bool(self.accepted) or typed_all

    @property
    def was_kept(self) -> bool | None:
        """Accepted and still there at the last check; None if no check was made."""
        if not self.was_accepted:
            return False
        for name in ("retained_120s", "retained_30s"):
            if name in self.retained:
                return self.retained[name]
        return None


def suggestion_records(events: Iterable[FeedbackEvent]) -> list[SuggestionRecord]:
    """Fold the events into one record per shown suggestion, oldest first; outcomes of a
    suggestion whose `shown` event was dropped with an old segment are ignored."""
    records: dict[str, SuggestionRecord] = {}
    for e in events:
        if isinstance(e, Shown):
            records[e.id] = SuggestionRecord(e.id, e)
            continue
        record = records.get(e.id)
        if record is None:
            continue
        if isinstance(e, Accepted):
            record.accepted.append(e.kind)
        elif isinstance(e, TypedThrough):
            record.typed_chars = max(record.typed_chars, e.chars)
        elif isinstance(e, Superseded):
            record.superseded = True
        elif isinstance(e, Dismissed):
            record.dismissed = True
        elif isinstance(e, Typed):
            record.typed = e.text
        elif isinstance(e, Retained):
            record.retained[e.check] = e.kept
    return sorted(records.values(), key=lambda r: r.time)


@dataclass
class NextEditRecord:
    """A shown next edit with what became of it: accepted (its command ran) or not."""

    id: str
    shown: NextEditShown
    was_accepted: bool = False
    dismissed: bool = False

    @property
    def time(self) -> float:
        return self.shown.t


def next_edit_records(
    events: Iterable[FeedbackEvent], source: str | None = None
) -> list[NextEditRecord]:
    """Fold the events into one record per shown next edit, oldest first; with `source`
    ("editor" or "simulated"), only those shown to that kind of user."""
    records: dict[str, NextEditRecord] = {}
    for e in events:
        if isinstance(e, NextEditShown):
            if source is None or e.source == source:
                records[e.id] = NextEditRecord(e.id, e)
        elif (record := records.get(e.id)) is not None:
            if isinstance(e, Accepted):
                record.was_accepted = True
            elif isinstance(e, Dismissed):
                record.dismissed = True
    return sorted(records.values(), key=lambda r: r.time)


def read_suggestions(folder: Path, source: str | None = None) -> list[SuggestionRecord]:
    """The suggestions of the log at `folder`, oldest first; with `source` ("editor" or
    "simulated"), only those shown to that kind of user."""
    records = suggestion_records(read_events(folder))
    if source is not None:
        records = [r for r in records if r.shown.source == source]
    return records
