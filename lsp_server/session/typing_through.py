"""Typing-through: serve the rest of the completion the user is typing, without the model.

When a completion is shown and the user types characters that match its start,
the editor asks again at the new cursor. The answer is the rest of the shown
completion: no prompt, no model call (Copilot, Tabby and Refact do the same).

Pure: no pygls, no torch. Offsets are character offsets into the document text.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Shown:
    """A completion shown at `offset` in `text` (the whole document then)."""

    text: str
    offset: int
    completion: str
    id: str | None = None  # the feedback log's id for it (None: not recorded)


def rest_of_shown(shown: Shown, text: str, offset: int) -> str | None:
    """What is left of `shown.completion` at `offset` in `text`, or None if it no longer fits.

    It fits when the document is unchanged except for characters inserted at
    the old cursor, the cursor stands right after them, and they are the start
    of the completion. Nothing left (the user typed all of it) is None too.
    """
    typed_len = offset - shown.offset
    if typed_len < 0 or typed_len >= len(shown.completion):
        return None
    if len(text) - len(shown.text) != typed_len:
        return None
    typed = text[shown.offset : offset]
    if not shown.completion.startswith(typed):
        return None
    # Both sides of the old cursor must be untouched; compare the short side first.
    before_ok = text.startswith(shown.text[: shown.offset])
    if not before_ok or not text.endswith(shown.text[shown.offset :]):
        return None
    return shown.completion[typed_len:]


class ShownCompletions:
    """The last completion shown in each document, for at most `capacity` documents."""

    def __init__(self, capacity: int = 16) -> None:
        self.capacity = capacity
        self._shown: OrderedDict[str, Shown] = OrderedDict()
        self.hits = 0

    def __len__(self) -> int:
        return len(self._shown)

    def remember(
        self, uri: str, text: str, offset: int, completion: str, id: str | None = None
    ) -> None:
        """Record that `completion` was shown at `offset`; an empty one forgets the document."""
        self._shown.pop(uri, None)
        if not completion:
            return
        self._shown[uri] = Shown(text, offset, completion, id)
        while len(self._shown) > self.capacity:
            self._shown.popitem(last=False)

    def lookup(self, uri: str, text: str, offset: int) -> str | None:
        """The rest of the completion shown in `uri`, if the user is typing through it."""
        shown = self._shown.get(uri)
        if shown is None:
            return None
        rest = rest_of_shown(shown, text, offset)
        if rest is not None:
            self.hits += 1
            self._shown.move_to_end(uri)
        return rest

    def current(self, uri: str) -> Shown | None:
        """The completion last shown in `uri`, if it is remembered."""
        return self._shown.get(uri)

    def forget(self, uri: str) -> None:
        self._shown.pop(uri, None)
