"""`FrameReader`: lenient on stdio (junk skipped), strict on TCP (anything but LSP refused)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from lsp_server.lsp.transport import FrameReader, NotLsp

FRAME = b"Content-Length: 2\r\nContent-Type: application/vscode-jsonrpc\r\n\r\n{}"


def chunks(*parts: bytes) -> Callable[[], Awaitable[bytes]]:
    queue = list(parts)

    async def read() -> bytes:
        return queue.pop(0) if queue else b""

    return read


def bodies(reader: FrameReader) -> list[bytes]:
    async def collect() -> list[bytes]:
        out = []
        while (body := await reader.next_body()) is not None:
            out.append(body)
        return out

    return asyncio.run(collect())


def test_a_strict_reader_takes_lsp_frames_in_any_chunking():
    data = FRAME + FRAME
    assert bodies(
        FrameReader(chunks(*(data[i : i + 1] for i in range(len(data)))), strict=True)
    ) == [
        b"{}",
        b"{}",
    ]


@pytest.mark.parametrize(
    "junk",
    [
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"GET / HTTP/1.1\r\n",
        b"X-Anything: 1\r\n",
        b"Content-Type: text/plain\r\n\r\n",  # no length
        b"Content-Length: 99999999999\r\n\r\n",
        b"x" * 300,  # a "line" that never ends
    ],
)
def test_a_strict_reader_refuses_what_is_not_lsp(junk: bytes):
    with pytest.raises(NotLsp):
        bodies(FrameReader(chunks(junk + FRAME), strict=True))
    with pytest.raises(NotLsp):
        bodies(FrameReader(chunks(FRAME, junk + FRAME), strict=True))


def test_a_lenient_reader_skips_junk():
    reader = FrameReader(chunks(b"Content-Type: text/plain\r\n\r\n", b"\x00 junk\r\n" + FRAME))
    assert bodies(reader) == [b"{}"]
