"""Reading and writing LSP messages on stdio or TCP, robust to what a broken client sends.

pygls' own loop trusts every `Content-Length`; one wrong header leaves it out of
step with the stream for good. Here a frame is found by its blank line, the
last `Content-Length` before it wins, and a request whose params do not parse
gets an error response instead of silence. On stdio (lenient) a body that is
not JSON is searched for the next header (a too-long length swallowed the next
message's start); on TCP (strict) anything that is not an LSP frame, an HTTP
request above all, closes the connection at once.

`run_connection` serves one `Connection`: each message is judged by its
`Lifecycle` (`lsp_server.lsp.lifecycle`) before pygls sees it, the deadlines
are enforced, and no parse or handler error gets out of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import JsonRPCProtocol

from lsp_server.lsp import pygls_compat
from lsp_server.lsp.lifecycle import Action, Lifecycle, Verdict

log = logging.getLogger("codetailor.transport")

CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d+)", re.IGNORECASE)
MAX_BODY = 64 * 2**20
MAX_HEADER = 64 * 2**10
HEADER_END = b"\r\n\r\n"
MAX_HEADER_LINE = 256  # a strict reader gives up on a "header line" longer than this
LSP_HEADER = re.compile(rb"(?i)content-(length|type)[ \t]*:[^\r\n]*")


class NotLsp(Exception):
    """The peer is not speaking LSP framing (an HTTP request, unknown headers...)."""


class FrameReader:
    """Splits a byte stream into message bodies; `read_chunk` returns b"" at the end.

    Lenient (stdio: the editor that started us is the only peer), a frame
    without a usable length is skipped and junk between frames is passed over.
    Strict (TCP: anyone on the machine, a web page included, can connect),
    anything but `Content-Length`/`Content-Type` header lines raises `NotLsp`.
    """

    def __init__(self, read_chunk: Callable[[], Awaitable[bytes]], *, strict: bool = False) -> None:
        self._read_chunk = read_chunk
        self._buffer = bytearray()
        self._eof = False
        self.strict = strict

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._read_chunk()
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    def _check_header(self, end: int) -> None:
        """In strict mode, every complete header line so far must be an LSP header."""
        if not self.strict:
            return
        complete = end if end >= 0 else self._buffer.rfind(b"\r\n")
        if complete < 0:
            complete = len(self._buffer) if len(self._buffer) > MAX_HEADER_LINE else 0
        for line in bytes(self._buffer[:complete]).split(b"\r\n"):
            if line and not LSP_HEADER.fullmatch(line):
                raise NotLsp(f"not an LSP header: {line[:40]!r}")

    async def next_body(self) -> bytes | None:
        """The next message body, or None at the end of the stream."""
        while True:
            end = self._buffer.find(HEADER_END)
            self._check_header(end)
            if end < 0:
                if len(self._buffer) > MAX_HEADER:  # garbage without a header: keep the tail
                    del self._buffer[: -len(HEADER_END)]
                if not await self._fill():
                    return None
                continue
            lengths = CONTENT_LENGTH.findall(self._buffer, 0, end)
            start = end + len(HEADER_END)
            length = int(lengths[-1]) if lengths else -1
            if not 0 <= length <= MAX_BODY:
                if self.strict:
                    raise NotLsp("a header without a usable Content-Length")
                log.warning("skipping a header without a usable Content-Length")
                del self._buffer[:start]
                continue
            while len(self._buffer) < start + length:
                if not await self._fill():
                    return None
            body = bytes(self._buffer[start : start + length])
            del self._buffer[: start + length]
            return body

    def push_back(self, data: bytes) -> None:
        self._buffer[:0] = data


class SafeWriter:
    """Wraps a binary stream or socket writer; a vanished client is logged once, not raised."""

    def __init__(self, write: Callable[[bytes], Any], close: Callable[[], Any]) -> None:
        self._write = write
        self._close = close
        self.closed = False

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._write(data)
        except (BrokenPipeError, ConnectionError, ValueError, OSError) as exc:
            log.warning("the client went away: %s", exc)
            self.closed = True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self._close()


@dataclass
class Connection:
    """One client's connection: its protocol (and server), writer and lifecycle, and limits.

    `admit` is awaited when `initialize` passes the token check; False refuses
    the client (the server is busy with another one). `auth_timeout` bounds the
    time from connecting to a valid `initialize`, however the bytes trickle in;
    `idle_timeout` the wait for each later message.
    """

    protocol: JsonRPCProtocol
    writer: SafeWriter
    lifecycle: Lifecycle
    admit: Callable[[], Awaitable[bool]] | None = None
    auth_timeout: float | None = None
    idle_timeout: float | None = None
    started: float = field(default_factory=time.monotonic)

    def wait_limit(self) -> float | None:
        """How long to wait for the next message: the `initialize` deadline, then the idle one."""
        if not self.lifecycle.initialized and self.auth_timeout is not None:
            return max(0.0, self.started + self.auth_timeout - time.monotonic())
        return self.idle_timeout

    def refuse(self, msg_id: Any, error: tuple[int, str]) -> None:
        pygls_compat.send_error(self.protocol, msg_id, JsonRpcException(error[1], code=error[0]))


BUSY = (-32001, "codetailor: another client is using this server; try again when it has gone")


def parse(body: bytes, reader: FrameReader) -> dict[str, Any] | None:
    """The body as a JSON object, or None (logged; a lenient reader resynchronises)."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError, MemoryError) as exc:  # also invalid UTF-8
        log.warning("dropping a body that is not JSON: %s", type(exc).__name__)
        resync = body.find(b"Content-Length:")
        if resync > 0 and not reader.strict:
            reader.push_back(body[resync:])
        return None
    if not isinstance(raw, dict):
        log.warning("dropping a message that is not a JSON object")
        return None
    return raw


def dispatch(protocol: JsonRPCProtocol, raw: dict[str, Any]) -> None:
    """Hand one JSON object to pygls; a malformed one is logged, and answered if it can be."""
    try:
        message = protocol.structure_message(raw)
    except JsonRpcException as exc:
        if "id" in raw and "method" in raw:
            error = exc if isinstance(exc, JsonRpcInvalidParams) else JsonRpcInvalidParams()
            pygls_compat.send_error(protocol, raw["id"], error)
        return
    if isinstance(message, dict):  # no "jsonrpc" member: not a JSON-RPC message
        log.warning("dropping a message without 'jsonrpc'")
        return
    protocol.handle_message(message)


async def handle(conn: Connection, reader: FrameReader, body: bytes) -> Verdict | None:
    """Judge and handle one body; a verdict that ends the connection is returned."""
    raw = parse(body, reader)
    if raw is None:
        return Verdict(Action.HANG_UP) if reader.strict else None
    verdict = conn.lifecycle.judge(raw)
    msg_id = raw.get("id")
    if verdict.action is Action.ADMIT:
        if conn.admit is not None and not await conn.admit():
            conn.refuse(msg_id, BUSY)
            return Verdict(Action.HANG_UP)
        conn.lifecycle.admitted()
        verdict = Verdict(Action.PASS)
    if verdict.error is not None and msg_id is not None:
        conn.refuse(msg_id, verdict.error)
    if verdict.action in (Action.HANG_UP, Action.EXIT):
        return verdict
    if verdict.action is Action.PASS:
        dispatch(conn.protocol, raw)
    return None


async def run_connection(conn: Connection, reader: FrameReader) -> int | None:
    """Serve one client until it disconnects or breaks the rules (None) or sends `exit`.

    Whatever a message does (unparseable, too deep, a handler that raises), the
    connection lives on or ends here in order: nothing escapes to the caller
    but the `exit` status.
    """
    conn.protocol.set_writer(conn.writer)
    while True:
        try:
            body = await asyncio.wait_for(reader.next_body(), conn.wait_limit())
        except TimeoutError:
            log.warning("closing a connection that sent nothing in time")
            return None
        except NotLsp as exc:
            log.warning("closing a connection that does not speak LSP: %s", exc)
            return None
        except OSError as exc:  # e.g. a reset
            log.warning("the client's connection failed: %s", exc)
            return None
        if body is None:
            return None
        try:
            ending = await handle(conn, reader, body)
        except Exception:  # noqa: BLE001 - one bad message must not end the session
            log.exception("error while handling a message")
            ending = Verdict(Action.HANG_UP) if not conn.lifecycle.authenticated else None
        if ending is not None:
            return ending.status if ending.action is Action.EXIT else None
        await asyncio.sleep(0)  # let handlers that became ready run between messages


def stdin_chunks(loop: asyncio.AbstractEventLoop, fd: int) -> Callable[[], Awaitable[bytes]]:
    """Read `fd` on a daemon thread (a blocked read must never keep the process alive)."""
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def pump() -> None:
        while True:
            try:
                data = os.read(fd, 65536)
            except OSError:
                data = b""
            loop.call_soon_threadsafe(chunks.put_nowait, data)
            if not data:
                return

    threading.Thread(target=pump, name="codetailor-stdin", daemon=True).start()
    return chunks.get


def protocol_stdout() -> Any:
    """A private handle on the real stdout for the protocol; fd 1 then points at stderr,
    so a stray print from any library cannot corrupt the stream."""
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return out
