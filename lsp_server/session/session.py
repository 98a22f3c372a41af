"""One editor's session: the completion policy, in plain values.

`Session` holds what a connected client shares with the server (settings, open
documents, the completions shown, the workspace context, in-flight requests,
counts) and decides every answer: typing-through, supersede and cancel, the
stale-answer check, empty answers by reason, acceptances and the status. The
LSP layer (`lsp_server.lsp.handlers`) only translates LSP params into these
calls and the answers back. Pure: no pygls, no torch; the model is reached
through `HostLike` (lsp_server.session.ports), so tests script it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from lsp_server import __version__
from lsp_server.session.documents import Change, Documents, looks_binary, offset_at, prompt_safe
from lsp_server.session.ports import CompleterLike, CompletionLike, HostLike
from lsp_server.session.settings import Settings, parse_settings, unknown_keys
from lsp_server.session.typing_through import ShownCompletions
from lsp_server.session.workspace import WorkspaceContext

log = logging.getLogger("codetailor.session")

# Why a request was answered with nothing; `codetailor.status` counts each one.
EMPTY_REASONS = (
    "unknown_document",  # the document is not open
    "disabled",  # the `enable` setting is off
    "binary",  # the document looks binary
    "not_ready",  # no model loaded (yet)
    "superseded",  # a newer request for the same document took over
    "stale",  # the document changed while the model ran
    "closed",  # the document was closed while the model ran
    "settings",  # new settings (another model, or disabled) stopped it
    "disconnected",  # the client went away
    "cancelled",  # $/cancelRequest (answered with an error, not an empty list)
    "failed",  # the generation raised
    "empty_generation",  # the model ran and had nothing to offer
)


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

    def stop(self, reason: str) -> None:
        if not self.cancel.is_set():
            self.reason = reason
            self.cancel.set()


class Session:
    """Settings, documents and the completion path for one client at a time."""

    def __init__(
        self,
        startup: Settings,
        host: HostLike,
        *,
        workspace: WorkspaceContext | None = None,
        shown_capacity: int = 16,
        host_settings: Settings | None = None,
        model_allowed: Callable[[str], bool] | None = None,
    ) -> None:
        self.startup = startup  # the command line's settings: what a null setting returns to
        self.settings = startup
        self.host = host
        # What the host was last asked to load (by an earlier client, say): a client whose
        # settings differ from it reloads. None: the startup settings.
        self.host_settings = host_settings or startup
        # Which model specs a client may set (None: any); the command line's is always allowed.
        self.model_allowed = model_allowed
        self.documents = Documents()
        self.shown = ShownCompletions(shown_capacity)
        self.workspace = workspace or WorkspaceContext()
        self.inflight: dict[str, Inflight] = {}
        self.counts: Counter[str] = Counter()
        self.empty: Counter[str] = Counter()
        self.last_generation: dict[str, Any] | None = None
        self.generating: int | None = None  # the request the model is working on now

    @property
    def encoding(self) -> str:
        """The negotiated position encoding ("utf-16" unless the client chose another)."""
        return self.documents.encoding

    # -- connection and settings ------------------------------------------------------------

    def initialize(self, options: Any, root_uri: str | None, encoding: str) -> list[str]:
        """A client connected: take its encoding, settings and workspace; returns problems."""
        self.documents = Documents(encoding)
        problems = self.configure(options, base=self.startup)
        self.workspace.set_root(root_uri, scan=self.settings.context)
        return problems

    def configure(self, raw: Any, *, base: Settings | None = None) -> list[str]:
        """Apply settings as a client sent them (on top of `base`, default the current ones).

        Returns one line per invalid value (the previous value is kept for it).
        """
        base = base or self.settings
        settings, problems = parse_settings(raw, base, self.startup)
        if not self._may_load(settings.model):
            problems.append(
                f"setting 'model': {settings.model!r} is a Hugging Face hub id, which this "
                "server only loads when started with --allow-client-models (or --model); "
                f"using {base.model!r}"
            )
            settings = dataclasses.replace(settings, model=base.model)
        if not self._may_use_engine(settings.engine):
            problems.append(
                f"setting 'engine': {settings.engine!r} is a remote engine this server was not "
                "started with (--engine), and clients may only choose one when it was started "
                f"with --allow-client-models; using {base.engine!r}"
            )
            settings = dataclasses.replace(settings, engine=base.engine)
        if ignored := unknown_keys(raw):
            log.info("ignoring unknown settings: %s", ", ".join(map(str, ignored)))
        self.apply_settings(settings)
        return problems

    def _may_load(self, model: str | None) -> bool:
        """Whether a client may set `model` (the command line's own is always allowed)."""
        if model is None or model == self.startup.model or self.model_allowed is None:
            return True
        return self.model_allowed(model)

    def _may_use_engine(self, engine: str) -> bool:
        """Whether a client may set `engine`: the local one and the command line's always;
        another URL (where the server would send prompts and its API key) only where
        clients may choose models at all (`model_allowed` is None)."""
        return engine in ("local", self.startup.engine) or self.model_allowed is None

    def apply_settings(self, settings: Settings) -> None:
        """Take new settings; a different model (or prompt format) loads in the background."""
        previous, self.settings = self.host_settings, settings
        reload = self.host.state == "idle" or (
            (settings.model_key, settings.prompt_format)
            != (previous.model_key, previous.prompt_format)
        )
        if reload:
            self.host_settings = settings
            self.cancel_all("settings")
            self.shown = ShownCompletions(self.shown.capacity)
            self.host.load(settings)
        elif not settings.enable:
            self.cancel_all("settings")

    def disconnect(self) -> None:
        """The client has gone: stop its generations and its workspace scan.

        A session is made per connection and dropped with it; the scan is told
        to stop on a thread of its own, so a scan stuck in a read never holds up
        the caller (the event loop).
        """
        self.cancel_all("disconnected")
        threading.Thread(
            target=self.workspace.stop, name="codetailor-index-stop", daemon=True
        ).start()

    # -- documents ------------------------------------------------------------------------

    def open(self, uri: str, text: str, version: int, language_id: str = "") -> None:
        self.documents.open(uri, text, version, language_id)
        self.workspace.opened(uri)

    def change(self, uri: str, version: int, changes: Iterable[Change]) -> None:
        self.cancel(uri, "stale")  # whatever it was computing is for text that no longer exists
        if self.documents.change(uri, version, changes):
            self.workspace.changed(uri)
        else:
            self.counts["unknown_document"] += 1

    def close(self, uri: str) -> None:
        self.cancel(uri, "closed")
        self.shown.forget(uri)
        self.documents.close(uri)
        self.workspace.closed(uri)

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self, uri: str, reason: str) -> None:
        """Stop the generation running for `uri`, if any (within one decoding step)."""
        inflight = self.inflight.pop(uri, None)
        if inflight is not None:
            inflight.stop(reason)

    def cancel_all(self, reason: str) -> None:
        for inflight in self.inflight.values():
            inflight.stop(reason)
        self.inflight.clear()

    # -- completion -----------------------------------------------------------------------

    def request_at(self, uri: str, line: int, character: int) -> Request | None:
        """The document and offset for an LSP position; None for a document that is not open."""
        doc = self.documents.get(uri)
        if doc is None:
            self.counts["unknown_document"] += 1
            self.empty["unknown_document"] += 1
            return None
        offset = offset_at(doc.text, line, character, self.encoding)
        return Request(uri, doc.text, offset, doc.revision, doc.language_id)

    def _answer_empty(self, reason: str) -> str:
        self.empty[reason] += 1
        return ""

    async def complete(self, request: Request) -> str:
        """The completion text at the request's cursor, or "" (disabled, not ready, stale...).

        Cancelling the awaiting task ($/cancelRequest) stops the model within
        one decoding step and raises `asyncio.CancelledError` as usual.
        """
        self.counts["requests"] += 1
        if not self.settings.enable:
            return self._answer_empty("disabled")
        if looks_binary(request.text):
            return self._answer_empty("binary")
        rest = self.shown.lookup(request.uri, request.text, request.offset)
        if rest is not None:
            self.counts["typed_through"] += 1
            return rest
        completer = self.host.completer
        if completer is None:
            self.counts["not_ready"] += 1
            return self._answer_empty("not_ready")
        self.cancel(request.uri, "superseded")  # a newer request supersedes the running one
        inflight = self.inflight[request.uri] = Inflight()
        job = self._generation(completer, request, inflight.cancel)
        try:
            completion = await asyncio.wrap_future(self.host.submit(job))
        except asyncio.CancelledError:  # $/cancelRequest: stop the model within one step
            inflight.stop("cancelled")
            self.counts["cancelled"] += 1
            self.empty["cancelled"] += 1
            raise
        except Exception:  # noqa: BLE001 - a failed generation answers empty, the server lives on
            log.exception("generation failed")
            self.counts["failed"] += 1
            return self._answer_empty("failed")
        finally:
            if self.inflight.get(request.uri) is inflight:
                del self.inflight[request.uri]
        return self._finish(request, inflight, completion)

    def _finish(
        self, request: Request, inflight: Inflight, completion: CompletionLike | None
    ) -> str:
        """The answer for a finished generation: dropped if stopped or stale, else shown."""
        doc = self.documents.get(request.uri)
        reason = None
        if completion is None or inflight.cancel.is_set():
            reason = inflight.reason or "superseded"
        elif doc is None:
            reason = "closed"
        elif doc.revision != request.revision:
            reason = "stale"
        if reason is not None:
            self.counts["superseded"] += 1  # the status' historic name for every dropped answer
            return self._answer_empty(reason)
        assert completion is not None
        self.shown.remember(request.uri, request.text, request.offset, completion.text)
        if not completion.text:
            return self._answer_empty("empty_generation")
        self.counts["shown"] += 1
        return completion.text

    def _generation(
        self, completer: CompleterLike, request: Request, cancel: threading.Event
    ) -> Callable[[], CompletionLike | None]:
        """The job for the worker thread: one `complete` call, unless cancelled first."""
        settings, number = self.settings, self.counts["requests"]

        def generate() -> CompletionLike | None:
            if cancel.is_set():
                return None
            self.generating = number
            try:
                return run()
            finally:
                self.generating = None

        def run() -> CompletionLike:
            started = time.perf_counter()
            text = prompt_safe(request.text)
            context = (
                self.workspace.snippets(self.documents, request.uri, text, request.offset)
                if settings.context
                else []
            )
            completion = completer.complete(
                text,
                request.offset,
                max_tokens=settings.max_tokens,
                mode=settings.mode,
                time_budget=settings.time_budget_ms / 1000,
                cancel=cancel,
                path=self.workspace.path_of(request.uri),
                context=context,
                language_id=request.language_id or None,
            )
            # Recorded here, so that a cancelled request's generation shows up too.
            self.last_generation = completion.as_dict() | {
                "request": number,
                # the engine's latency_ms plus prompt building and tokenization
                "complete_ms": round((time.perf_counter() - started) * 1000, 1),
            }
            return completion

        return generate

    # -- feedback and status ------------------------------------------------------------------

    def accepted(self, kind: object = None) -> None:
        """Count an accepted completion (`kind`: "inline" or "completion"); never sent anywhere."""
        self.counts["accepted"] += 1
        if kind in ("inline", "completion"):
            self.counts[f"accepted_{kind}"] += 1

    def acceptance_rate(self) -> float | None:
        shown, accepted = self.counts["shown"], self.counts["accepted"]
        return round(accepted / shown, 3) if shown else None

    def status(self) -> dict[str, Any]:
        """What `codetailor.status` answers; all of it stays on this machine."""
        return self.host.status() | {
            "version": __version__,
            "settings": self.settings.to_wire(),
            "counts": dict(self.counts),
            "acceptanceRate": self.acceptance_rate(),
            "emptyAnswers": {reason: self.empty[reason] for reason in EMPTY_REASONS},
            "documents": len(self.documents),
            "shownCompletions": len(self.shown),
            "typingThroughHits": self.shown.hits,
            "context": self.workspace.status(),
            "lastGeneration": self.last_generation,
            "generating": self.generating,
        }
