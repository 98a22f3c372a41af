"""A request in plain values, and the jobs the model host runs for a session.

The session builds a job on the event loop, with the settings of the moment,
and hands it to the host (`HostLike.submit` or `submit_background`), which runs
it on its generation thread: a completion (`Jobs.completion`, for a request
or the next suggestion) or a prefill (`Jobs.warm`). Both give the completer
the document's path and, when the `context` setting is on, snippets of other
files. Pure: no pygls, no torch.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lsp_server.completion.prompt import Snippet
from lsp_server.session.documents import Document, Documents, prompt_safe
from lsp_server.session.ports import CompleterLike, CompletionLike
from lsp_server.session.settings import Settings
from lsp_server.session.workspace import WorkspaceContext


@dataclass(frozen=True)
class Request:
    """A completion request in plain values: which document, which text, where."""

    uri: str
    text: str
    offset: int
    revision: int
    language_id: str = ""


@dataclass
class Inflight:
    """A generation in progress: its cancel flag, and why it was stopped (once stopped)."""

    cancel: threading.Event = field(default_factory=threading.Event)
    reason: str = ""
    # The next suggestion's cancel flag while the request waits for it (see ahead.py).
    linked: threading.Event | None = None

    def stop(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.reason = reason
            self.cancel.set()
        if self.linked is not None:
            self.linked.set()


class Jobs:
    """The host's jobs for one session's `documents`, in its `workspace`.

    Records what the status shows of requests: the one the model works on now
    (`generating`) and the last one's facts (`last_generation`).
    """

    def __init__(self, documents: Documents, workspace: WorkspaceContext) -> None:
        self.documents = documents
        self.workspace = workspace
        self.generating: int | None = None  # the request the model is working on now
        self.last_generation: dict[str, Any] | None = None

    def completion(
        self,
        completer: CompleterLike,
        request: Request,
        settings: Settings,
        cancel: threading.Event,
        *,
        number: int | None = None,
    ) -> Callable[[], CompletionLike | None]:
        """The job for one `complete` call, unless cancelled first.

        `number`, a request's (None for background work), shows it in the status
        as `generating` and `lastGeneration`.
        """

        def generate() -> CompletionLike | None:
            if cancel.is_set():
                return None
            if number is not None:
                self.generating = number
            try:
                return self._complete(completer, request, settings, cancel, number)
            finally:
                if number is not None:
                    self.generating = None

        return generate

    def _complete(
        self,
        completer: CompleterLike,
        request: Request,
        settings: Settings,
        cancel: threading.Event,
        number: int | None,
    ) -> CompletionLike:
        """One `complete` call on the generation thread; a request's is recorded."""
        started = time.perf_counter()
        text = prompt_safe(request.text)
        completion = completer.complete(
            text,
            request.offset,
            max_tokens=settings.max_tokens,
            mode=settings.mode,
            time_budget=settings.time_budget_ms / 1000,
            prefill_budget=settings.first_token_timeout_ms / 1000,
            cancel=cancel,
            path=self.workspace.path_of(request.uri),
            context=self._context(settings, request.uri, text, request.offset),
            language_id=request.language_id or None,
        )
        if number is not None:  # recorded here, so that a cancelled request's shows up too
            self.last_generation = completion.as_dict() | {
                "request": number,
                # the engine's latency_ms plus prompt building and tokenization
                "complete_ms": round((time.perf_counter() - started) * 1000, 1),
            }
        return completion

    def warm(
        self,
        completer: CompleterLike,
        request: Request,
        settings: Settings,
        cancel: threading.Event,
    ) -> int:
        """Prefill the prompt for `request`'s cursor into the model's cache (on the
        generation thread); the tokens computed."""
        text = prompt_safe(request.text)
        return completer.warm(
            text,
            request.offset,
            path=self.workspace.path_of(request.uri),
            context=self._context(settings, request.uri, text, request.offset),
            cancel=cancel,
        )

    def _context(self, settings: Settings, uri: str, text: str, offset: int) -> list[Snippet]:
        """Snippets of other files for the prompt, when the `context` setting is on."""
        if not settings.context:
            return []
        return self.workspace.snippets(self.documents, uri, text, offset)


def dropped_because(
    doc: Document | None, request: Request, inflight: Inflight, completion: object | None
) -> str | None:
    """Why a finished generation's answer is not shown (one of DROPPED_REASONS): it was
    stopped, or its document (`doc`, now) closed or changed meanwhile; None: it is shown."""
    if inflight.cancel.is_set() and not inflight.reason:
        return "queue_full"  # the host dropped it: too many requests waited
    if completion is None or inflight.cancel.is_set():
        return inflight.reason or "superseded"
    if doc is None:
        return "closed"
    if doc.revision != request.revision:
        return "stale"
    return None
