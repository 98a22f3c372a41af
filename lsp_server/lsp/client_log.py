"""The server's log in the editor: log records become `window/logMessage` notifications.

Editors show a server's stderr as errors (VS Code tags every line `[error]`),
so on stdio a healthy start used to read as a failure: a progress bar, warnings
from libraries, no line saying it was ready. Once a client has sent `initialize`,
records go to it instead, with levels that mean something (ERROR -> Error,
WARNING -> Warning, INFO -> Info, DEBUG -> Log), and stderr stays quiet; before
that, and after it leaves, they go to stderr as usual. A `--log-file` keeps
everything. Progress bars (tqdm, Hugging Face) are off in the serve process:
model loading reports through `$/progress` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

# Environment variables that turn off tqdm's and Hugging Face's progress bars; set
# before the loader thread first imports transformers.
QUIET_PROGRESS = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def message_type(level: int) -> types.MessageType:
    """The LSP message type for a logging level."""
    if level >= logging.ERROR:
        return types.MessageType.Error
    if level >= logging.WARNING:
        return types.MessageType.Warning
    if level >= logging.INFO:
        return types.MessageType.Info
    return types.MessageType.Log


class ClientLogHandler(logging.Handler):
    """Sends records to the server's client, once it has initialized, from any thread."""

    def __init__(self, server: LanguageServer | None, level: int = logging.INFO) -> None:
        super().__init__(level)
        self.server = server
        self._sending = threading.local()  # a record logged while sending one is not sent
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def connected(self) -> bool:
        """Whether a client has initialized this connection (TCP gives each client a new one)."""
        protocol = getattr(self.server, "protocol", None)
        return getattr(protocol, "client_capabilities", None) is not None

    def filter(self, record: logging.LogRecord) -> bool:
        # pygls logs each message it sends: forwarding those would never end.
        if record.name == "pygls" or record.name.startswith("pygls."):
            return False
        return self.connected() and super().filter(record)

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self._sending, "active", False):
            return
        try:
            params = types.LogMessageParams(
                type=message_type(record.levelno), message=self.format(record)
            )
        except Exception:  # noqa: BLE001 - a bad record must not break the caller
            self.handleError(record)
            return
        loop = getattr(self.server, "loop", None)
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._send(params)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: client gone
                loop.call_soon_threadsafe(self._send, params)

    def _send(self, params: types.LogMessageParams) -> None:
        self._sending.active = True
        try:
            if self.connected() and self.server is not None:
                self.server.window_log_message(params)
        except Exception:  # noqa: BLE001 - the connection may be closing
            pass
        finally:
            self._sending.active = False


def install(server: LanguageServer | None, *, quiet_stderr: bool) -> ClientLogHandler:
    """Forward the log to `server`'s client; with `quiet_stderr`, stderr holds only what
    could not go there (before `initialize`, after the client left).

    The forwarded level is INFO (the "ready" line) even when stderr shows only
    warnings; `-v -v` (DEBUG) applies to both.
    """
    for name, value in QUIET_PROGRESS.items():
        os.environ.setdefault(name, value)
    logging.captureWarnings(True)  # `warnings.warn` from libraries: a WARNING record
    root = logging.getLogger()
    handler = ClientLogHandler(server, level=min(root.level or logging.WARNING, logging.INFO))
    for existing in root.handlers:
        if existing.level == logging.NOTSET:
            existing.setLevel(root.level)  # what it showed before the root level drops
        if quiet_stderr and _writes_to_stderr(existing):
            existing.addFilter(lambda record: not handler.filter(record))
    root.addHandler(handler)
    root.setLevel(min(root.level, handler.level))
    # transformers logs through ours once it is imported: `model.loading` routes it there
    # on the loader thread (importing it on a thread of our own raced the loader's import).
    return handler


def _writes_to_stderr(handler: logging.Handler) -> bool:
    import sys

    stream = getattr(handler, "stream", None)
    return not isinstance(handler, logging.FileHandler) and stream in (sys.stderr, sys.__stderr__)
