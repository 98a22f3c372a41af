"""Work done before the editor asks: where to warm the KV cache, and the suggestion after one.

Prefill is the cost of a completion on a CPU, so the session does it ahead of
time, at lower priority than any request (the host's background jobs):
- warming: when a document is opened or focused, or when the cursor (seen
  through the edits) moves the prompt window somewhere new, the window there is
  prefilled into the model's KV cache, so the first request there finds it warm
  (as llama.vim does on entering a buffer). `WarmPlan` decides when;
- the next suggestion: once a suggestion is shown, the one that follows its
  acceptance (the text with the suggestion inserted, the cursor after it) is
  computed, and served when the user accepts and asks again (as llama.vscode
  does). `Predicted` is that computation.

Pure: no pygls, no torch.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from lsp_server.completion.window import WINDOW_STEP_LINES
from lsp_server.session.documents import Change, offset_at, units

# An edit that inserts or removes this many lines (a paste, a deleted block)
# changes the window's text: warm it again.
WARM_EDIT_LINES = 2
# Warm the windows of this many documents at most, the latest first: a client that
# opens many documents at once (restoring its tabs) would otherwise queue minutes of
# prefill, and the KV prefix cache keeps only a few sequences anyway.
WARM_DOCUMENTS = 2


@dataclass
class Predicted:
    """The completion being computed for `text` with the cursor at `offset`."""

    text: str
    offset: int
    cancel: threading.Event
    future: Future[Any]

    def matches(self, text: str, offset: int) -> bool:
        return offset == self.offset and text == self.text


class WarmPlan:
    """Where each document's window was last warmed or asked for, and which one has focus.

    There is no LSP notification for focus: opening a document, or the first
    request or edit in another document, counts as focusing it.
    """

    def __init__(self) -> None:
        self.lines: dict[str, int] = {}  # the cursor line the window was last prepared for
        self.focused: str | None = None

    def opened(self, uri: str, line: int) -> None:
        self.focused = uri
        self.lines[uri] = line

    def asked(self, uri: str, line: int) -> None:
        """A request prefills the window at `line` itself."""
        self.focused = uri
        self.lines[uri] = line

    def moved(self, uri: str, line: int, lines_changed: int = 0) -> bool:
        """True when the cursor, now at `line` (moved, or after an edit that inserted or
        removed `lines_changed` lines), needs the window there warmed."""
        focus = uri != self.focused
        last = self.lines.get(uri)
        # The window's start moves in steps of lines: this far, another window may show.
        moved = last is None or abs(line - last) >= WINDOW_STEP_LINES
        self.focused = uri
        if focus or moved or lines_changed >= WARM_EDIT_LINES:
            self.lines[uri] = line
            return True
        return False

    def forget(self, uri: str) -> None:
        self.lines.pop(uri, None)
        if self.focused == uri:
            self.focused = None


def edit_cursor(text: str, change: Change, encoding: str) -> tuple[int, int, int] | None:
    """(offset, line, lines changed) of the cursor after `change`, the last edit made to `text`.

    The cursor stands after the inserted text. None for a whole-document
    replacement, which says nothing of where the cursor is.
    """
    if change.start is None or change.end is None:
        return None
    inserted = change.new_text.replace("\r\n", "\n").replace("\r", "\n")
    start = min(change.start, change.end)
    removed = abs(change.end.line - change.start.line)
    line = start.line + inserted.count("\n")
    if "\n" in inserted:
        character = units(inserted.rsplit("\n", 1)[-1], encoding)
    else:
        character = start.character + units(inserted, encoding)
    offset = offset_at(text, line, character, encoding)
    return offset, line, max(removed, inserted.count("\n"))
