"""Next-edit requests (`textDocument/copilotInlineEdit`), in plain values.

`NextEdits` answers "what will the user edit next near this position?" for one
session: it keeps the edit history (`EditHistory`), builds the window and the
request on the generation thread (where the document's git HEAD text is fetched
through the `HeadText` port, once per opened document), runs the host's next-edit
predictor, and decides what is shown. Like completions: a newer request for the
same document supersedes the running one, an edit stops it (stale), a request
for an older version of the document is answered with nothing, and each empty
answer is counted once under its reason (`status()["emptyAnswers"]`).

What is shown goes through the session's show-or-stay-quiet decision
(`QuietGate.decide_edit`, lsp_server.session.quiet), as completions do: the
edit the rewrite made, or the one the predictor's own confidence gate held back
(that gate is the next edits' global rule, which the decision applies itself),
is shown when its score reaches the `quietness` threshold (or for exploration),
else answered with nothing (reason `quiet`) and logged as suppressed.

Pure: no pygls, no torch; the LSP side (lsp_server.lsp.next_edit) converts.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from lsp_server.completion.next_edit import (
    EditWindow,
    NextEditAnswer,
    NextEditRequest,
    RecentEdit,
    WindowEdit,
)
from lsp_server.completion.next_edit_text import edit_window
from lsp_server.session.accepts import AcceptLedger
from lsp_server.session.documents import Document, Documents, looks_binary, offset_at, uri_to_path
from lsp_server.session.edit_history import EditHistory, HeadText
from lsp_server.session.jobs import Inflight
from lsp_server.session.model_choice import ModelChoice
from lsp_server.session.ports import HostLike, NextEditorLike, RecordingLike, ShownNextEdit
from lsp_server.session.quiet import QuietDecision, QuietGate
from lsp_server.session.settings import Settings
from lsp_server.session.workspace import WorkspaceContext

log = logging.getLogger("codetailor.next_edit")

# The lines above and below the cursor that a next edit asked for by an empty completion
# (`suggest(fallback=True)`) rewrites: it can only be offered as an inline completion when
# it changes the cursor's own line, so the window is that line and one each side. Over
# the full 11-line window such a rewrite took 1.2-2.5 s on the CPU (SmolLM2-135M; most
# ran to the token cap) and offered none of the 13 asked for in the typing replay
# (`bench latency --bare-client`); over 3 lines, 0.25-0.9 s, and the replay's p95 for
# such a client fell from 2.2 s to 1.2 (docs/benchmarks.md).
FALLBACK_HALF_WINDOW = 1

# Why a next-edit request was answered `{edits: []}`.
EMPTY_REASONS = (
    "unknown_document",  # the document is not open
    "disabled",  # `enable` or `nextEdit` is off
    "old_version",  # the request names a version the document no longer has
    "binary",  # the document looks binary
    "not_ready",  # no model loaded yet
    "superseded",  # a newer request for the same document took over
    "stale",  # the document changed while the model ran
    "closed",  # the document was closed while the model ran
    "cancelled",  # $/cancelRequest
    "failed",  # the prediction raised
    "no_edit",  # the model rewrote the window unchanged
    "reverts",  # the edit would undo the user's last edit
    "sentinel",  # the rewrite held a prompt marker
    # the show-or-stay-quiet decision held the edit back (before a repository has a
    # filter: the model was not sure enough of it, the predictor's gate)
    "quiet",
    "time_budget",  # `timeBudgetMs` ran out before the window was settled
    "unfinished",  # the model stopped before the window was settled
    # asked for by an empty completion (for a client that draws only inline completions),
    # the edit was not one on the cursor's line, holding the cursor: it could not be shown
    "not_inline",
)


@dataclass(frozen=True)
class ShownEdit:
    """A next edit to show: document text [start, end) becomes `text` (offsets in `text_at`,
    the document as it was asked about); `id` names it in the feedback log."""

    uri: str
    version: int
    start: int
    end: int
    text: str
    text_at: str
    id: str | None

    def fits_inline(self, offset: int) -> bool:
        """Whether it can be offered as an inline completion at `offset` (see `fits_inline`)."""
        return fits_inline(self.text_at, self.start, self.end, self.text, offset)


def fits_inline(text: str, start: int, end: int, new: str, offset: int) -> bool:
    """Whether replacing `text`[start:end] by `new` can be offered as an inline completion
    with the cursor at `offset`: an edit within one line (`new` without a line break) whose
    range holds the cursor."""
    line_end = text.find("\n", start)
    line_end = len(text) if line_end < 0 else line_end
    return "\n" not in new and end <= line_end and start <= offset <= end


class NextEditsOwner(Protocol):
    """What `NextEdits` reads of its session."""

    documents: Documents
    workspace: WorkspaceContext
    host: HostLike
    settings: Settings
    recording: RecordingLike
    quiet: QuietGate
    models: ModelChoice


class NextEdits:
    """The next-edit path of one session."""

    def __init__(self, owner: NextEditsOwner, head_text: HeadText | None = None) -> None:
        self.owner = owner
        self.head_text: HeadText = head_text or (lambda path: None)
        self.history = EditHistory()
        self.inflight: dict[str, Inflight] = {}
        # The predictions asked for by an empty completion (`fallback`), which the next
        # completion request for the document supersedes.
        self.fallbacks: dict[str, Inflight] = {}
        self.counts: Counter[str] = Counter()
        self.empty: Counter[str] = Counter()
        self.last: dict[str, Any] | None = None  # the last prediction's facts
        # Recent shown edits' ids (the feedback log's, else new ones): each accepted once.
        self.accepts = AcceptLedger()

    # -- documents ---------------------------------------------------------------------------

    def opened(self, uri: str, text: str) -> None:
        self.history.opened(uri, text)

    def changed(self, uri: str, old: str | None, new: str) -> None:
        self.cancel(uri, "stale")
        if old is not None:
            self.history.changed(uri, old, new)

    def closed(self, uri: str) -> None:
        self.cancel(uri, "closed")
        self.history.closed(uri)

    def cancel(self, uri: str, reason: str) -> None:
        inflight = self.inflight.pop(uri, None)
        if inflight is not None:
            inflight.stop(reason)

    def cancel_fallback(self, uri: str) -> None:
        """A completion request for `uri` came: stop the prediction an earlier empty
        completion asked for there, if it runs (an editor's own next-edit request stays)."""
        inflight = self.fallbacks.pop(uri, None)
        if inflight is not None and self.inflight.get(uri) is inflight:
            self.cancel(uri, "superseded")

    def cancel_all(self, reason: str) -> None:
        for inflight in self.inflight.values():
            inflight.stop(reason)
        self.inflight.clear()

    # -- requests ----------------------------------------------------------------------------

    def _empty(self, reason: str) -> None:
        self.empty[reason] += 1

    def _ready(self, uri: str, version: int | None) -> tuple[Document, NextEditorLike] | None:
        """The document and predictor for a request, or None (counted under its reason)."""
        owner = self.owner
        doc = owner.documents.get(uri)
        settings = owner.settings
        why = None
        if doc is None:
            why = "unknown_document"
        elif not (settings.enable and settings.next_edit):
            why = "disabled"
        elif version is not None and version != doc.version:
            why = "old_version"
        elif looks_binary(doc.text):
            why = "binary"
        predictor = None
        if why is None:
            layout = settings.next_edit_format
            adapter = owner.models.next_edit_adapter_for(uri, layout)
            predictor = owner.host.next_edit_for(adapter, layout)
            why = None if predictor is not None else "not_ready"
        if why is not None or doc is None or predictor is None:
            self._empty(why or "not_ready")
            return None
        return doc, predictor

    async def suggest(
        self, uri: str, version: int | None, line: int, character: int, *, fallback: bool = False
    ) -> ShownEdit | None:
        """The next edit near (line, character) of document `uri` at `version`; None: none.
        `fallback`: asked for by an empty completion, which the next completion supersedes.

        Cancelling the awaiting task ($/cancelRequest) stops the model within one step.
        """
        self.counts["requests"] += 1
        ready = self._ready(uri, version)
        if ready is None:
            return None
        doc, predictor = ready
        started = time.perf_counter()
        text, revision, at_version = doc.text, doc.revision, doc.version
        offset = offset_at(text, line, character, self.owner.documents.encoding)
        self.cancel(uri, "superseded")
        inflight = self.inflight[uri] = Inflight()
        if fallback:
            self.fallbacks[uri] = inflight
        job = self._job(predictor, uri, text, offset, inflight.cancel, fallback)
        try:
            result = await asyncio.wrap_future(self.owner.host.submit(job))
        except asyncio.CancelledError:
            inflight.stop("cancelled")
            self._empty("cancelled")
            raise
        except Exception:  # noqa: BLE001 - a failed prediction answers nothing, the server lives
            log.exception("next-edit prediction failed")
            self._empty("failed")
            return None
        finally:
            if self.inflight.get(uri) is inflight:
                del self.inflight[uri]
            if self.fallbacks.get(uri) is inflight:
                del self.fallbacks[uri]
        latency_ms = (time.perf_counter() - started) * 1000
        inline_at = offset if fallback else None
        return self._finish(
            uri, at_version, revision, text, inflight, result, latency_ms, inline_at
        )

    def _job(
        self,
        predictor: NextEditorLike,
        uri: str,
        text: str,
        offset: int,
        cancel: threading.Event,
        fallback: bool = False,
    ) -> Callable[[], tuple[EditWindow, NextEditAnswer] | None]:
        """The prediction, run on the generation thread (HEAD is read there, once); a
        `fallback` one over the cursor's line and FALLBACK_HALF_WINDOW lines each side."""
        owner, history = self.owner, self.history
        settings = owner.settings
        half = min(settings.next_edit_window_lines, predictor.window_lines // 2)
        if fallback:
            half = min(half, FALLBACK_HALF_WINDOW)

        def predict() -> tuple[EditWindow, NextEditAnswer] | None:
            if cancel.is_set():
                return None
            path = owner.workspace.path_of(uri) or uri
            fs_path = uri_to_path(uri)
            if history.needs_head(uri):
                history.set_head(uri, self.head_text(fs_path) if fs_path else None)
            original = history.original(uri)
            window = edit_window(
                original if original is not None else text, text, offset, 2 * half + 1
            )
            edits = tuple(RecentEdit(path, e.before, e.after) for e in history.recent(uri))
            request = NextEditRequest(path, edits, window)
            budget = settings.time_budget_ms / 1000
            return window, predictor.predict(request, cancel=cancel, time_budget=budget)

        return predict

    def _finish(
        self,
        uri: str,
        version: int,
        revision: int,
        text: str,
        inflight: Inflight,
        result: tuple[EditWindow, NextEditAnswer] | None,
        latency_ms: float,
        inline_at: int | None = None,
    ) -> ShownEdit | None:
        """What a finished prediction shows: nothing when stopped, stale or no edit; with
        `inline_at` (a fallback's cursor), nothing unless it can be offered as an inline
        completion there (else it is neither decided on nor logged: no one could see it)."""
        doc = self.owner.documents.get(uri)
        if result is None or inflight.cancel.is_set():
            reason = inflight.reason or "superseded"
        elif doc is None:
            reason = "closed"
        elif doc.revision != revision:
            reason = "stale"
        else:
            window, answer = result
            self.last = _facts(answer, latency_ms)
            edit = answer.edit or answer.withheld
            span = None
            if edit is not None:  # where the edit stands in the document
                base = window_offset(window, text)
                span = (base + edit.start, base + edit.end)
                if inline_at is not None and not fits_inline(text, *span, edit.text, inline_at):
                    self._empty("not_inline")
                    return None
            if edit is not None and span is not None and answer.updated is not None:
                settings = self.owner.settings
                quiet = self.owner.quiet.decide_edit(
                    uri, window, edit, answer.confidence, doc.language_id, settings.quietness
                )
                shown = self._shown(
                    uri, version, text, span, window, answer, edit, latency_ms, quiet
                )
                if shown is not None:
                    return shown
                reason = "quiet"
            else:
                reason = "time_budget" if answer.stop_reason == "time" else answer.stop_reason
                reason = reason if reason in EMPTY_REASONS else "unfinished"
        self._empty(reason)
        return None

    def _shown(
        self,
        uri: str,
        version: int,
        text: str,
        span: tuple[int, int],
        window: EditWindow,
        answer: NextEditAnswer,
        edit: WindowEdit,
        latency_ms: float,
        quiet: QuietDecision | None,
    ) -> ShownEdit | None:
        """`edit` shown, logged with the decision `quiet` (None: no filter applied); None
        when the decision keeps it quiet (logged as suppressed). `span`: the edit's
        (start, end) in `text`, the document at `version`."""
        assert answer.updated is not None
        owner = self.owner
        logged = None
        if owner.workspace.in_workspace(uri):
            logged = ShownNextEdit(
                uri=uri,
                path=owner.workspace.path_of(uri),
                start_line=window.start_line,
                original=window.original,
                current=window.current,
                updated=answer.updated,
                prompt_format=owner.settings.next_edit_format or "sweep",
                latency_ms=latency_ms,
                describe=owner.host.status,
                quiet=quiet.as_dict() if quiet is not None else None,
            )
        if quiet is not None and not quiet.show:
            if logged is not None:
                owner.recording.next_edit_suppressed(logged)
            return None
        self.counts["shown"] += 1
        id = self.accepts.shown(owner.recording.next_edit_shown(logged) if logged else None)
        owner.quiet.edit_shown(uri, id)
        return ShownEdit(uri, version, *span, edit.text, text, id)

    # -- feedback and status -------------------------------------------------------------------

    def accepted(self, id: object) -> None:
        """The editor applied next edit `id` (its command, or the notification); only the
        first acceptance of an edit that was shown counts."""
        if not self.accepts.accept(id):
            return
        self.owner.quiet.edit_accepted(id)
        self.counts["accepted"] += 1
        self.owner.recording.accepted(id, "full")

    def shown_by_editor(self, id: object) -> None:
        """`textDocument/didShowInlineEdit`: the editor drew next edit `id`."""
        self.counts["displayed"] += 1

    def status(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "emptyAnswers": {reason: self.empty[reason] for reason in EMPTY_REASONS},
            "last": self.last,
        }


def window_offset(window: EditWindow, text: str) -> int:
    """Where the window starts in the document it was cut from (lines split at `\n`)."""
    offset = 0
    for _ in range(window.start_line):
        offset = text.index("\n", offset) + 1
    return offset


def _facts(answer: NextEditAnswer, latency_ms: float) -> dict[str, Any]:
    forwards = answer.forwards
    return {
        "stopReason": answer.stop_reason,
        "promptTokens": answer.prompt_tokens,
        "cachedTokens": answer.cached_tokens,
        "generatedTokens": answer.generated_tokens,
        "forwards": forwards,
        "tokensPerForward": round(answer.generated_tokens / forwards, 2) if forwards else None,
        "latencyMs": round(latency_ms, 1),
        "confidence": answer.confidence.to_json() if answer.confidence else None,
    }
