"""The language server shell: a `Session`, the protocol and the transport glue.

`CodetailorServer` holds the session (`lsp_server.session.session.Session`:
settings, documents, the completion policy, counts) and what only the LSP side
knows: the auth gate, messages to the user and `$/progress` for model loading.
The handlers (`lsp_server.lsp.handlers`) are attached by whoever builds the
server (`lsp_server.lsp.serve`), so this module does not import them.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException
from pygls.lsp.server import LanguageServer
from pygls.protocol import default_converter

from lsp_server import __version__
from lsp_server.lsp import pygls_compat
from lsp_server.lsp.progress import LoadProgress
from lsp_server.model.host import Loader, ModelHost
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings, settings_section

log = logging.getLogger("codetailor.server")

AUTH_ERROR = -32001


class CodetailorProtocol(pygls_compat.PassThroughDocuments):
    """pygls' protocol with our own document store, and a gate for unauthenticated clients."""

    def handle_message(self, message: Any) -> None:
        method = getattr(message, "method", None)
        server = pygls_compat.server_of(self)
        authorized = isinstance(server, CodetailorServer) and server.authorized
        if authorized or method in (types.INITIALIZE, types.EXIT, None):
            super().handle_message(message)
        elif pygls_compat.is_request(message):
            pygls_compat.send_error(self, message.id, auth_error())


def auth_error() -> JsonRpcException:
    return JsonRpcException(
        "codetailor: authentication failed: this server requires the token it was started "
        "with (--auth-token or CODETAILOR_AUTH_TOKEN) in initializationOptions.authToken",
        code=AUTH_ERROR,
    )


class CodetailorServer(LanguageServer):
    """A pygls server around one `Session`; `register` attaches the LSP handlers."""

    def __init__(
        self,
        startup: Settings,
        *,
        register: Callable[[CodetailorServer], None],
        auth_token: str | None = None,
        trust_remote_code: bool = False,
        loader: Loader | None = None,
    ) -> None:
        super().__init__("codetailor", __version__, protocol_cls=CodetailorProtocol)
        self.register = register
        self.auth_token = auth_token
        self.authorized = auth_token is None
        self._reported: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        host_kwargs = {"loader": loader} if loader is not None else {}
        host = ModelHost(self._on_model_event, trust_remote_code=trust_remote_code, **host_kwargs)
        self.session = Session(startup, host)
        self.progress = LoadProgress(self)
        register(self)

    # -- messages ---------------------------------------------------------------------------

    def report_once(
        self, message: str, kind: types.MessageType = types.MessageType.Warning
    ) -> None:
        """Show `message` to the user the first time only; log it every time."""
        log.warning("%s", message)
        if message in self._reported:
            return
        self._reported.add(message)
        params = types.ShowMessageParams(type=kind, message=f"codetailor: {message}")
        self.window_show_message(params)

    def report_server_error(self, error: Exception, source: Any) -> None:
        log.error("server error (%s): %s", getattr(source, "__name__", source), error)

    # -- connection ---------------------------------------------------------------------------

    def check_token(self, options: Any) -> None:
        """Let the client in if it sent the right token (or none is needed); else refuse it."""
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

    def reset_connection(self) -> None:
        """Forget one client's session; the model stays loaded for the next (TCP) client.

        The next client gets a fresh protocol object: answers still on their way
        to the old client go to the old one's closed writer, never to the new one.
        """
        self.session.reset()
        pygls_compat.cancel_running_requests(self.protocol)
        self.protocol = CodetailorProtocol(self, default_converter())
        self.register(self)
        self.authorized = self.auth_token is None
        self.progress = LoadProgress(self)

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
