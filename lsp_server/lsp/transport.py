"""Reading and writing LSP messages on stdio or TCP, robust to what a broken client sends.

pygls' own loop trusts every `Content-Length`; one wrong header leaves it out of
step with the stream for good. Here a frame is found by its blank line, the
last `Content-Length` before it wins, a body that is not JSON is searched for
the next header (a too-long length swallowed the next message's start), and a
request whose params do not parse gets an error response instead of silence.
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
from collections.abc import Awaitable, Callable
from typing import Any

from pygls.exceptions import JsonRpcException, JsonRpcInvalidParams
from pygls.protocol import JsonRPCProtocol

from lsp_server.lsp import pygls_compat

log = logging.getLogger("codetailor.transport")

CONTENT_LENGTH = re.compile(rb"Content-Length:[ \t]*(\d+)", re.IGNORECASE)
MAX_BODY = 64 * 2**20
MAX_HEADER = 64 * 2**10
HEADER_END = b"\r\n\r\n"


class FrameReader:
    """Splits a byte stream into message bodies; `read_chunk` returns b"" at the end."""

    def __init__(self, read_chunk: Callable[[], Awaitable[bytes]]) -> None:
        self._read_chunk = read_chunk
        self._buffer = bytearray()
        self._eof = False

    async def _fill(self) -> bool:
        if self._eof:
            return False
        chunk = await self._read_chunk()
        if not chunk:
            self._eof = True
            return False
        self._buffer += chunk
        return True

    async def next_body(self) -> bytes | None:
        """The next message body, or None at the end of the stream."""
        while True:
            end = self._buffer.find(HEADER_END)
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


def dispatch(protocol: JsonRPCProtocol, reader: FrameReader, body: bytes) -> None:
    """Parse one body and hand it to pygls; a malformed one is logged, and answered if it can be."""
    try:
        raw = json.loads(body)
    except ValueError as exc:  # also invalid UTF-8
        log.warning("dropping a body that is not JSON: %s", exc)
        resync = body.find(b"Content-Length:")
        if resync > 0:
            reader.push_back(body[resync:])
        return
    if not isinstance(raw, dict):
        log.warning("dropping a message that is not a JSON object")
        return
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
    try:
        protocol.handle_message(message)
    except SystemExit:
        raise
    except Exception:  # noqa: BLE001 - one bad message must not end the session
        log.exception("error while handling %s", raw.get("method", "a response"))


async def run_connection(
    protocol: JsonRPCProtocol, reader: FrameReader, writer: SafeWriter
) -> int | None:
    """Serve one client until it disconnects (None) or sends `exit` (the exit status)."""
    protocol.set_writer(writer)
    while (body := await reader.next_body()) is not None:
        try:
            dispatch(protocol, reader, body)
        except SystemExit as exc:
            return int(exc.code or 0)
        await asyncio.sleep(0)  # let handlers that became ready run between messages
    return None


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
