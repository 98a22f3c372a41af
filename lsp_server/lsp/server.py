"""The language server: its state and the completion path.

`CodetailorServer` holds everything a session needs (settings, open documents,
the model host, in-flight requests, counts); the LSP handlers in
`lsp_server.lsp.handlers` turn LSP params into plain values, call the methods here
and turn the answers back into LSP types. Generation runs on the model host's
worker thread; the event loop only waits for it. `lsp_server.lsp.serve` runs it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import RPCRequest

from lsp_server import __version__
from lsp_server.lsp.progress import LoadProgress
from lsp_server.model.host import ModelHost
from lsp_server.session.documents import Documents, looks_binary, offset_at, prompt_safe
from lsp_server.session.settings import Settings, settings_section
from lsp_server.session.typing_through import ShownCompletions
from lsp_server.session.workspace import WorkspaceContext

log = logging.getLogger("codetailor.server")

AUTH_ERROR = -32001


class CodetailorProtocol(LanguageServerProtocol):
    """pygls' protocol with our own document store, and a gate for unauthenticated clients."""

    _server: CodetailorServer

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        if self._server.authorized or method in (types.INITIALIZE, types.EXIT, None):
            super().handle_message(message)
        elif isinstance(message, RPCRequest):
            self._send_response(message.id, error=auth_error().to_response_error())

    # The document builtins only pass the notification on: `CodetailorServer.documents`
    # keeps the text (with LSP's line breaks, which `str.splitlines` does not follow).
    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams):
        yield self.fm.features[types.TEXT_DOCUMENT_DID_OPEN], (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams):
        yield self.fm.features[types.TEXT_DOCUMENT_DID_CHANGE], (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams):
        yield self.fm.features[types.TEXT_DOCUMENT_DID_CLOSE], (params,), None


def auth_error() -> JsonRpcException:
    return JsonRpcException(
        "codetailor: authentication failed: this server requires the token it was started "
        "with (--auth-token or CODETAILOR_AUTH_TOKEN) in initializationOptions.authToken",
        code=AUTH_ERROR,
    )


@dataclass(frozen=True)
class Request:
    """A completion request in plain values: which document, which text, where."""

    uri: str
    text: str
    offset: int
    revision: int
    language_id: str = ""


class CodetailorServer(LanguageServer):
    """Session state and the completion path; see `lsp_server.lsp.handlers` for the LSP side."""

    def __init__(
        self,
        startup: Settings,
        *,
        auth_token: str | None = None,
        trust_remote_code: bool = False,
        loader: Any = None,
    ) -> None:
        super().__init__("codetailor", __version__, protocol_cls=CodetailorProtocol)
        self.startup = startup  # the command line's settings: what a null setting returns to
        self.settings = startup
        self.auth_token = auth_token
        self.authorized = auth_token is None
        self.encoding = "utf-16"
        self.documents = Documents()
        self.shown = ShownCompletions()
        self.repo_context = WorkspaceContext()
        self.inflight: dict[str, threading.Event] = {}
        self.counts: Counter[str] = Counter()
        self.last_generation: dict[str, Any] | None = None
        self._reported: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        host_kwargs = {"loader": loader} if loader is not None else {}
        self.host = ModelHost(
            self._on_model_event, trust_remote_code=trust_remote_code, **host_kwargs
        )
        self.progress = LoadProgress(self)
        from lsp_server.lsp.handlers import register

        register(self)

    # -- messages ---------------------------------------------------------------------------

    def report_once(self, message: str, kind: types.MessageType = types.MessageType.Warning):
        """Show `message` to the user the first time only; log it every time."""
        log.warning("%s", message)
        if message in self._reported:
            return
        self._reported.add(message)
        params = types.ShowMessageParams(type=kind, message=f"codetailor: {message}")
        self.window_show_message(params)

    def report_server_error(self, error: Exception, source: Any) -> None:
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)

    # -- session ------------------------------------------------------------------------------

    def check_token(self, options: Any) -> None:
        if self.auth_token is None:
            return
        sent = settings_section(options).get("authToken") or (
            options.get("authToken") if isinstance(options, dict) else None
        )
        if not isinstance(sent, str) or not hmac.compare_digest(sent, self.auth_token):
            log.warning("refusing a client without the right auth token")
            if self.loop is not None:  # hang up once the error response is on its way
                self.loop.call_later(0.2, self.protocol.writer.close)
            raise auth_error()
        self.authorized = True

    def apply_settings(self, settings: Settings, problems: list[str]) -> None:
        """Take new settings; a different model (or prompt format) loads in the background."""
        for problem in problems:
            self.report_once(problem)
        previous, self.settings = self.settings, settings
        reload = self.host.state == "idle" or (
            (settings.model_key, settings.prompt_format)
            != (previous.model_key, previous.prompt_format)
        )
        if reload:
            self.cancel_all()
            self.shown = ShownCompletions(self.shown.capacity)
            self.host.load(settings)
        elif not settings.enable:
            self.cancel_all()

    def reset_connection(self) -> None:
        """Forget one client's session; the model stays loaded for the next (TCP) client.

        The next client gets a fresh protocol object: answers still on their way
        to the old client go to the old one's closed writer, never to the new one.
        """
        from lsp_server.lsp.handlers import register

        self.cancel_all()
        for future in list(self.protocol._request_futures.values()):
            future.cancel()
        self.protocol = CodetailorProtocol(self, default_converter())
        register(self)
        self.documents = Documents()
        self.shown = ShownCompletions(self.shown.capacity)
        self.authorized = self.auth_token is None
        self.progress = LoadProgress(self)

    def cancel_all(self) -> None:
        for event in self.inflight.values():
            event.set()
        self.inflight.clear()

    def cancel(self, uri: str) -> None:
        event = self.inflight.pop(uri, None)
        if event is not None:
            event.set()

    # -- completion ----------------------------------------------------------------------------

    def request_at(self, uri: str, line: int, character: int) -> Request | None:
        """The document and offset for an LSP position; None for a document that is not open."""
        doc = self.documents.get(uri)
        if doc is None:
            self.counts["unknown_document"] += 1
            return None
        offset = offset_at(doc.text, line, character, self.encoding)
        return Request(uri, doc.text, offset, doc.revision, doc.language_id)

    async def complete(self, request: Request) -> str:
        """The completion text at the request's cursor, or "" (disabled, not ready, stale...)."""
        self.counts["requests"] += 1
        if not self.settings.enable or looks_binary(request.text):
            return ""
        rest = self.shown.lookup(request.uri, request.text, request.offset)
        if rest is not None:
            self.counts["typed_through"] += 1
            return rest
        completer = self.host.completer
        if completer is None:
            self.counts["not_ready"] += 1
            return ""
        self.cancel(request.uri)  # a newer request supersedes the one still running
        cancel = self.inflight[request.uri] = threading.Event()
        job = self._generation(completer, request, cancel)
        try:
            completion = await asyncio.wrap_future(self.host.generator.submit(job))
        except asyncio.CancelledError:  # $/cancelRequest: stop the model within one step
            cancel.set()
            self.counts["cancelled"] += 1
            raise
        except Exception:  # noqa: BLE001 - a failed generation answers empty, the server lives on
            log.exception("generation failed")
            self.counts["failed"] += 1
            return ""
        finally:
            if self.inflight.get(request.uri) is cancel:
                del self.inflight[request.uri]
        doc = self.documents.get(request.uri)
        if completion is None or cancel.is_set() or doc is None or doc.revision != request.revision:
            self.counts["superseded"] += 1
            return ""
        self.shown.remember(request.uri, request.text, request.offset, completion.text)
        if completion.text:
            self.counts["shown"] += 1
        return completion.text

    def _generation(
        self, completer: Any, request: Request, cancel: threading.Event
    ) -> Callable[[], Any]:
        """The job for the worker thread: one `Completer.complete` call, unless cancelled first."""
        settings, number = self.settings, self.counts["requests"]

        def generate() -> Any:
            if cancel.is_set():
                return None
            started = time.perf_counter()
            text = prompt_safe(request.text)
            context = (
                self.repo_context.snippets(self.documents, request.uri, text, request.offset)
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
                path=self.repo_context.path_of(request.uri),
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

    def status(self) -> dict[str, Any]:
        """What `codetailor.status` answers; all of it stays on this machine."""
        shown, accepted = self.counts["shown"], self.counts["accepted"]
        return self.host.status() | {
            "version": __version__,
            "settings": self.settings.to_wire(),
            "counts": dict(self.counts),
            "acceptanceRate": round(accepted / shown, 3) if shown else None,
            "documents": len(self.documents),
            "shownCompletions": len(self.shown),
            "typingThroughHits": self.shown.hits,
            "context": self.repo_context.status(),
            "lastGeneration": self.last_generation,
        }

    # -- model events (from the loader thread) --------------------------------------------------

    def _on_model_event(self, kind: str, message: str, percentage: int | None) -> None:
        if self.loop is not None:
            self.loop.call_soon_threadsafe(self._model_event, kind, message, percentage)

    def _model_event(self, kind: str, message: str, percentage: int | None) -> None:
        if kind == "problem":
            self.report_once(message)
            return
        if kind == "failed":
            self.report_once(message, types.MessageType.Error)
        else:
            log.info("%s", message)
        self.progress.event(kind, message, percentage)
