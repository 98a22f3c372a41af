"""The language server: its state, the completion path, and `codetailor serve`.

`CodetailorServer` holds everything a session needs (settings, open documents,
the model host, in-flight requests, counts); the LSP handlers in
`lsp_server.handlers` turn LSP params into plain values, call the methods here
and turn the answers back into LSP types. Generation runs on the model host's
worker thread; the event loop only waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import ipaddress
import logging
import os
import sys
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import LanguageServerProtocol, default_converter, lsp_method
from pygls.protocol.json_rpc import RPCRequest

from lsp_server import __version__, transport
from lsp_server.documents import Documents, looks_binary, offset_at, prompt_safe
from lsp_server.errors import CodetailorError
from lsp_server.service import ModelHost
from lsp_server.settings import Settings
from lsp_server.typing_through import ShownCompletions

log = logging.getLogger("codetailor.server")

AUTH_ERROR = -32001
CLIENT_WAIT_S = 2.0  # how long a new TCP client waits for the previous one to finish


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


class CodetailorServer(LanguageServer):
    """Session state and the completion path; see `lsp_server.handlers` for the LSP side."""

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
        from lsp_server.handlers import register

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
        sent = options.get("authToken") if isinstance(options, dict) else None
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
        from lsp_server.handlers import register

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
        return Request(uri, doc.text, offset, doc.revision)

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
        settings = self.settings
        text = prompt_safe(request.text)

        number = self.counts["requests"]

        def generate() -> Any:  # on the worker thread
            if cancel.is_set():
                return None
            completion = completer.complete(
                text,
                request.offset,
                max_tokens=settings.max_tokens,
                mode=settings.mode,
                time_budget=settings.time_budget_ms / 1000,
                cancel=cancel,
            )
            # Recorded here, so a cancelled request's generation shows up too.
            self.last_generation = completion.as_dict() | {"request": number}
            return completion

        try:
            completion = await asyncio.wrap_future(self.host.generator.submit(generate))
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


class LoadProgress:
    """`$/progress` for model loading: create a token, then begin, report and end.

    Events wait until the client has sent `initialized` and answered the create request.
    """

    def __init__(self, ls: CodetailorServer) -> None:
        self.ls = ls
        self.enabled = False  # set by `initialized` when the client supports progress
        self._token: str | None = None
        self._created = False
        self._pending: list[tuple[str, str, int | None]] = []

    def start(self, client_supports: bool) -> None:
        self.enabled = client_supports
        if self.enabled and self._pending:
            self._create()

    def event(self, kind: str, message: str, percentage: int | None) -> None:
        if kind == "begin":
            self._token, self._created, self._pending = None, False, []
        self._pending.append((kind, message, percentage))
        if not self.enabled:
            return
        if self._token is None:
            self._create()
        elif self._created:
            self._flush()

    def _create(self) -> None:
        token = self._token = f"codetailor-load-{uuid.uuid4().hex[:8]}"

        def created(*_: Any) -> None:
            if token == self._token:
                self._created = True
                self._flush()

        self.ls.work_done_progress.create(token, callback=created)

    def _flush(self) -> None:
        assert self._token is not None
        progress = self.ls.work_done_progress
        for kind, message, percentage in self._pending:
            if kind == "begin":
                value: Any = types.WorkDoneProgressBegin(
                    title="Codetailor", message=message, percentage=percentage
                )
                progress.begin(self._token, value)
            elif kind == "report":
                value = types.WorkDoneProgressReport(message=message, percentage=percentage)
                progress.report(self._token, value)
            else:
                progress.end(self._token, types.WorkDoneProgressEnd(message=message))
        self._pending = []


# -- `codetailor serve` --------------------------------------------------------------------------


def parse_tcp(spec: str) -> tuple[str, int]:
    """HOST:PORT, :PORT or PORT; the host defaults to 127.0.0.1."""
    host, _, port = spec.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise CodetailorError(f"--tcp expects HOST:PORT (e.g. 127.0.0.1:7070), got '{spec}'")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(args: argparse.Namespace) -> int:
    if args.verbose < 2:  # pygls logs every message it sends at INFO: documents included
        logging.getLogger("pygls").setLevel(logging.WARNING)
    token = args.auth_token or os.environ.get("CODETAILOR_AUTH_TOKEN") or None
    address = parse_tcp(args.tcp) if args.tcp else None
    if address and not is_loopback(address[0]) and not token:
        raise CodetailorError(
            f"refusing to listen on {address[0]} (reachable from other machines) without a "
            "token: pass --auth-token TOKEN or set CODETAILOR_AUTH_TOKEN, or bind 127.0.0.1"
        )
    startup = Settings(model=args.model, adapter=args.adapter, device=args.device, dtype=args.dtype)
    server = CodetailorServer(startup, auth_token=token, trust_remote_code=args.trust_remote_code)
    if address:
        return asyncio.run(serve_tcp(server, *address))
    status = asyncio.run(serve_stdio(server))
    # The editor has gone: leave now, without the seconds torch's teardown takes
    # and without waiting for a generation thread to notice its cancel flag.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(status)


async def serve_stdio(server: CodetailorServer) -> int:
    server.loop = asyncio.get_running_loop()
    out = transport.protocol_stdout()
    writer = transport.SafeWriter(lambda data: out.write(data), out.close)
    reader = transport.FrameReader(transport.stdin_chunks(server.loop, sys.stdin.fileno()))
    status = await transport.run_connection(server.protocol, reader, writer)
    server.cancel_all()
    if status is None:
        log.info("the client closed stdin; exiting")
    return status or 0


async def serve_tcp(server: CodetailorServer, host: str, port: int) -> int:
    """Serve one client at a time; the model stays loaded between clients."""
    server.loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = server.loop.create_future()
    busy = asyncio.Lock()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:  # the previous client may be a moment away from noticing its own hang-up
            await asyncio.wait_for(busy.acquire(), CLIENT_WAIT_S)
        except TimeoutError:
            log.warning("refusing a second client while one is connected")
            writer.close()
            return
        try:
            safe = transport.SafeWriter(writer.write, writer.close)
            frames = transport.FrameReader(lambda: reader.read(65536))
            status = await transport.run_connection(server.protocol, frames, safe)
            safe.close()
            server.reset_connection()
            if status is not None and not done.done():
                done.set_result(status)
        finally:
            busy.release()

    listener = await asyncio.start_server(on_client, host, port)
    bound = listener.sockets[0].getsockname()
    print(f"codetailor: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    async with listener:
        return await done
