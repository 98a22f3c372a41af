"""The recent edits of each open document, for next-edit suggestions.

From `didChange` the history keeps, per document, the last few edits as the lines
they changed (before -> after). Keystrokes close in time (`COALESCE_S`) and place
(within `COALESCE_LINES` lines of the edit being made) join that edit, so typing
a word is one edit, not one per character; an edit that comes back to where it
started (typed, then deleted) disappears. At most `MAX_EDITS` per document.

It also keeps each document's "original": the file at git HEAD where the
repository tracks it (so serving sees what training mined from commits), else the
text when it was opened. HEAD is I/O: the session fetches it through a port
(`HeadText`) on the generation thread and hands it here (`set_head`).

Pure: no pygls, no torch, no file I/O, no threads.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

COALESCE_S = 2.0
COALESCE_LINES = 2
MAX_EDITS = 8

# A document's file path -> its text at git HEAD (None: not tracked, or no repository).
HeadText = Callable[[str], str | None]


@dataclass(frozen=True)
class LineEdit:
    """The lines an edit changed: `before` at line `line` became `after`."""

    line: int
    before: str
    after: str


def line_edit(old: str, new: str) -> LineEdit | None:
    """The changed lines between two texts (common first and last lines trimmed)."""
    if old == new:
        return None
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    before, after = "".join(a[head : len(a) - tail]), "".join(b[head : len(b) - tail])
    return LineEdit(head, before, after) if before != after else None


@dataclass
class _Doc:
    opened: str
    head: str | None = None
    head_known: bool = False
    edits: deque[LineEdit] = field(default_factory=lambda: deque(maxlen=MAX_EDITS))
    # The edit being made: the text before it, its lines now, when it last grew.
    base: str | None = None
    pending: LineEdit | None = None
    at: float = 0.0


class EditHistory:
    """Recent edits and the original text of each open document."""

    def __init__(
        self, *, coalesce_s: float = COALESCE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.coalesce_s = coalesce_s
        self.clock = clock
        self._docs: dict[str, _Doc] = {}

    def opened(self, uri: str, text: str) -> None:
        self._docs[uri] = _Doc(opened=text)

    def closed(self, uri: str) -> None:
        self._docs.pop(uri, None)

    def changed(self, uri: str, old: str, new: str) -> None:
        """The document went from `old` to `new` (one didChange)."""
        doc = self._docs.get(uri)
        if doc is None:
            doc = self._docs[uri] = _Doc(opened=old)
        edit = line_edit(old, new)
        if edit is None:
            return
        now = self.clock()
        if doc.base is not None and now - doc.at <= self.coalesce_s and _near(doc, edit):
            doc.pending = line_edit(doc.base, new)
        else:
            if doc.pending is not None:
                doc.edits.append(doc.pending)
            doc.base, doc.pending = old, edit
        doc.at = now

    def recent(self, uri: str) -> tuple[LineEdit, ...]:
        """The document's recent edits, oldest first (the one being made last)."""
        doc = self._docs.get(uri)
        if doc is None:
            return ()
        return (*doc.edits, *((doc.pending,) if doc.pending is not None else ()))

    def needs_head(self, uri: str) -> bool:
        """Whether the document's HEAD text has not been asked for yet."""
        doc = self._docs.get(uri)
        return doc is not None and not doc.head_known

    def set_head(self, uri: str, text: str | None) -> None:
        """The document's text at git HEAD (None: not tracked)."""
        doc = self._docs.get(uri)
        if doc is not None:
            doc.head, doc.head_known = text, True

    def original(self, uri: str) -> str | None:
        """The text the window's "before" comes from: HEAD's, else the text when opened."""
        doc = self._docs.get(uri)
        if doc is None:
            return None
        return doc.head if doc.head is not None else doc.opened


def _near(doc: _Doc, edit: LineEdit) -> bool:
    """Whether `edit` is within COALESCE_LINES of the edit being made (its lines now)."""
    pending = doc.pending
    if pending is None:
        return True  # the edit being made was undone; typing there goes on
    first = pending.line
    last = first + max(pending.after.count("\n"), 1)
    edit_last = edit.line + max(edit.before.count("\n"), 1)
    return edit.line <= last + COALESCE_LINES and edit_last >= first - COALESCE_LINES
