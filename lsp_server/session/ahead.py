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

`Ahead` holds that work for a session: it starts, replaces, serves and stops
it, and counts it for the status. Pure: no pygls, no torch.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from lsp_server.completion.window import WINDOW_STEP_LINES
from lsp_server.session.documents import Change, Documents, looks_binary, offset_at, units
from lsp_server.session.jobs import Inflight, Jobs, Request
from lsp_server.session.ports import CompleterLike, CompletionLike, HostLike
from lsp_server.session.settings import Settings

log = logging.getLogger("codetailor.session")

# An edit that inserts or removes this many lines (a paste, a deleted block)
# changes the window's text: warm it again.
WARM_EDIT_LINES = 2
# Warm the windows of this many documents at most, the latest first: a client that
# opens many documents at once (restoring its tabs) would otherwise queue minutes of
# prefill, and the KV prefix cache keeps only a few sequences anyway.
WARM_DOCUMENTS = 2
# The status' "ahead" counts: cursor positions the editor reported (`codetailor/cursor`);
# warms asked for, finished, cut short by a request, skipped (the document changed
# first), tokens prefilled; next suggestions computed, and served.
AHEAD_COUNTS = (
    "cursors",
    "warms",
    "warmsDone",
    "warmsYielded",
    "warmsSkipped",
    "warmedTokens",
    "nextComputed",
    "nextHits",
)


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


class Ahead:
    """A session's work ahead of its requests: per document, the warm running and the
    next suggestion computed; where to warm next (`plan`); the status' counts."""

    def __init__(self, host: HostLike, documents: Documents, jobs: Jobs) -> None:
        self.host = host
        self.documents = documents
        self.jobs = jobs
        self.plan = WarmPlan()
        self.warms: dict[str, threading.Event] = {}  # per document, the latest warm's cancel flag
        self.predicted: dict[str, Predicted] = {}  # per document, the next suggestion
        # All keys present: the worker thread adds to them while the status copies them,
        # so the dict must never change size.
        self.counts: dict[str, int] = dict.fromkeys(AHEAD_COUNTS, 0)

    # -- warming ----------------------------------------------------------------------------

    def warm(
        self, uri: str, offset: int, completer: CompleterLike | None, settings: Settings
    ) -> None:
        """Prefill the window for a cursor at `offset` in `uri`, in the background, in
        place of the warm running there (none without a completer, or disabled)."""
        doc = self.documents.get(uri)
        if doc is None or completer is None or not settings.enable:
            return
        if looks_binary(doc.text):
            return
        self.stop_warm(uri)
        cancel = self.warms[uri] = threading.Event()
        while len(self.warms) > WARM_DOCUMENTS:  # only the latest documents' windows
            self.warms.pop(next(iter(self.warms))).set()
        self.counts["warms"] += 1
        request = Request(uri, doc.text, offset, doc.revision, doc.language_id)
        self.host.submit_background(self._warming(completer, request, settings, cancel), cancel)

    def _warming(
        self,
        completer: CompleterLike,
        request: Request,
        settings: Settings,
        cancel: threading.Event,
    ) -> Callable[[], int]:
        """The background job that warms: skipped if the document changed before it ran."""

        def warm() -> int:
            doc = self.documents.get(request.uri)
            if cancel.is_set() or doc is None or doc.revision != request.revision:
                self.counts["warmsSkipped"] += 1
                return 0
            try:
                computed = self.jobs.warm(completer, request, settings, cancel)
            except Exception:  # noqa: BLE001 - warming is an optimisation: log and go on
                log.exception("warming failed")
                return 0
            self.counts["warmedTokens"] += computed
            self.counts["warmsYielded" if cancel.is_set() else "warmsDone"] += 1
            return computed

        return warm

    def stop_warm(self, uri: str) -> None:
        """Stop the warm running for `uri`, if any."""
        warm = self.warms.pop(uri, None)
        if warm is not None:
            warm.set()

    # -- the next suggestion ----------------------------------------------------------------

    def predict(
        self, request: Request, shown: str, completer: CompleterLike | None, settings: Settings
    ) -> None:
        """Compute, in the background, the suggestion that follows accepting `shown`."""
        if completer is None:
            return
        offset = request.offset + len(shown)
        text = request.text[: request.offset] + shown + request.text[request.offset :]
        accepted = Request(request.uri, text, offset, request.revision, request.language_id)
        self.forget_prediction(request.uri)
        cancel = threading.Event()
        job = self.jobs.completion(completer, accepted, settings, cancel)
        future = self.host.submit_background(job, cancel)
        self.predicted[request.uri] = Predicted(text, offset, cancel, future)
        self.counts["nextComputed"] += 1

    async def served(self, request: Request, inflight: Inflight) -> CompletionLike | None:
        """The suggestion computed ahead for exactly this text and cursor, if it has one.

        Waits for it if it is still being computed; a newer request stops it as
        it would a generation. None when there is none, or when it was cut short
        (it yields to any request) or failed: the caller then generates.
        """
        predicted = self.predicted.pop(request.uri, None)
        if predicted is None:
            return None
        if not predicted.matches(request.text, request.offset):
            predicted.cancel.set()  # the user went elsewhere
            return None
        inflight.linked = predicted.cancel
        completion: CompletionLike | None
        try:
            completion = await asyncio.wrap_future(predicted.future)
        except Exception:  # noqa: BLE001 - a failed prediction: generate instead
            completion = None
        finally:
            inflight.linked = None
        if inflight.cancel.is_set():
            return completion
        if completion is None or (not completion.text and predicted.cancel.is_set()):
            return None
        self.counts["nextHits"] += 1
        return completion

    def forget_prediction(self, uri: str) -> None:
        """Stop and drop the next suggestion computed for `uri`, if any."""
        predicted = self.predicted.pop(uri, None)
        if predicted is not None:
            predicted.cancel.set()

    # -- both -------------------------------------------------------------------------------

    def drop(self, uri: str) -> None:
        """Stop the background work for `uri` (warming, the next suggestion)."""
        self.stop_warm(uri)
        self.forget_prediction(uri)

    def closed(self, uri: str) -> None:
        """`uri` was closed: stop its background work and forget where it was warmed."""
        self.drop(uri)
        self.plan.forget(uri)

    def drop_all(self) -> None:
        for uri in list(self.warms) + list(self.predicted):
            self.drop(uri)
