"""The language server shell: one connection's `Session`, the protocol and messages.

`CodetailorServer` holds the session (`lsp_server.session.session.Session`:
settings, documents, the completion policy, counts) and what only the LSP side
knows: messages to the user and `$/progress` for model loading. One is made
per connection (`lsp_server.lsp.serve`) over the one `ModelHost`, which
outlives connections. Who may send what (the token, the lifecycle) is decided
before a message gets here, by `lsp_server.lsp.lifecycle`. The handlers
(`lsp_server.lsp.handlers`) are attached by whoever builds the server, so this
module does not import them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from lsp_server import __version__
from lsp_server.errors import CodetailorError
from lsp_server.feedback import Recording
from lsp_server.index import WorkspaceScanner
from lsp_server.lsp import pygls_compat
from lsp_server.lsp.progress import LoadProgress
from lsp_server.methods import INLINE_EDIT
from lsp_server.model import registry
from lsp_server.model.adapter_meta import learned_next_edits
from lsp_server.model.host import ModelHost
from lsp_server.model.loading import cache_home, resolve_model
from lsp_server.model.shipped import shipped_adapter
from lsp_server.quiet.store import FilterFile
from lsp_server.repo.head import head_text
from lsp_server.session.model_choice import ADAPTER_POLL_S, AdapterSource
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from lsp_server.spec import ModelSpec

log = logging.getLogger("codetailor.server")


def local_model(spec: str) -> bool:
    """True unless `spec` names a Hugging Face hub id (an alias or a local path is local)."""
    try:
        return resolve_model(spec).kind != "hub"
    except CodetailorError:
        return True  # not a hub id either: loading it fails with its own message


class CodetailorProtocol(pygls_compat.PassThroughDocuments):
    """pygls' protocol with our own document store; what reaches it passed the lifecycle gate
    (`lsp_server.lsp.lifecycle`) first."""

    # Next edits (`textDocument/copilotInlineEdit`) are no LSP 3.18 method: say so here.
    experimental = {"codetailor": {"nextEdit": True, "inlineEditMethod": INLINE_EDIT}}


class ModelEvents:
    """Hands the model host's events (from its loader thread) to the client being served.

    The host outlives connections; each admitted connection's server becomes
    the `client` for as long as it is connected, and nobody else hears a thing.
    """

    def __init__(self) -> None:
        self.client: CodetailorServer | None = None

    def __call__(self, kind: str, message: str, percentage: int | None) -> None:
        client = self.client
        if client is not None and client.loop is not None:
            client.loop.call_soon_threadsafe(client.model_event, kind, message, percentage)


class CodetailorServer(LanguageServer):
    """One connection's server: a fresh `Session` over the shared model host.

    Made when a client connects and dropped when it goes (`close`): settings,
    documents and shown completions never outlive the connection; the model
    (`host`) does. `register` attaches the LSP handlers.
    """

    def __init__(
        self,
        startup: Settings,
        host: ModelHost,
        *,
        register: Callable[[CodetailorServer], None],
        allow_client_models: bool = True,
        allow_client_engines: bool = True,
        loading: ModelSpec | None = None,
    ) -> None:
        """`loading`: how this server loads models (--trust-remote-code, --compile)."""
        super().__init__("codetailor", __version__, protocol_cls=CodetailorProtocol)
        self._reported: set[str] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        model_allowed = None if allow_client_models else local_model
        self.session = Session(
            startup,
            host,
            model_allowed=model_allowed,
            engines_allowed=allow_client_engines,
            recording=Recording(cache_home()),
            scanner=WorkspaceScanner(),
            adapters=AdapterSource(
                registry.registered_for,
                registry.stamp,
                registry.resolve_adapter,
                lambda adapter, layout: learned_next_edits(adapter.path, layout),
                shipped_adapter,
            ),
            loading=loading,
            head_text=head_text,
            quiet=FilterFile(cache_home()),
        )
        self._adapter_watch: asyncio.Task[None] | None = None
        # Not `progress`: that name is pygls' own method on LanguageServer.
        self.load_progress = LoadProgress(self)
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

    def watch_adapters(self) -> None:
        """Look every few seconds whether a new adapter was registered for the workspace
        (a fine-tune finished); the session then swaps it in (hot reload)."""
        if self.loop is not None and self._adapter_watch is None:
            self._adapter_watch = self.loop.create_task(self._watch_adapters())

    async def _watch_adapters(self) -> None:
        while True:
            await asyncio.sleep(ADAPTER_POLL_S)
            try:
                self.session.check_adapters()
            except Exception:  # noqa: BLE001 - a broken registry must not end the watch
                log.exception("checking the adapter registry failed")

    def close(self) -> None:
        """The connection is over: stop its generations, scan and the requests still running."""
        if self._adapter_watch is not None:
            self._adapter_watch.cancel()
        self.session.disconnect()
        pygls_compat.cancel_running_requests(self.protocol)

    # -- model events (from the loader thread) --------------------------------------------------

    def model_event(self, kind: str, message: str, percentage: int | None) -> None:
        if kind == "problem":
            self.report_once(message)
            return
        if kind == "failed":
            self.report_once(message, types.MessageType.Error)
        else:
            log.info("%s", message)
        self.load_progress.event(kind, message, percentage)
