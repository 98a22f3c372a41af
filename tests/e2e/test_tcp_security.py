"""TCP mode under attack (issue 14, findings 1-5): per-connection state torn down whatever
ends the connection, nothing before a valid `initialize`, no HTTP, deadlines, safe tokens.

One server per module, on loopback with a token and short deadlines; every test ends by
checking that a client with the token still gets in and is served.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.rawclient import RawClient, frame, listening_port

TOKEN = "s3cret"
URI = "file:///work/private.py"
SECRET_TEXT = "API_PASSWORD = 'hunter2'\nvalue = "
AUTH_TIMEOUT_S = 2.0


@pytest.fixture(scope="module")
def tcp(endless_model_dir: Path) -> Iterator[tuple[RawClient, int]]:
    server = RawClient.spawn(
        "--model",
        str(endless_model_dir),
        "--tcp",
        "127.0.0.1:0",
        "--auth-timeout",
        str(AUTH_TIMEOUT_S),
        env={"CODETAILOR_AUTH_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"},
    )
    yield server, listening_port(server)
    server.proc.terminate()
    server.close()


def raw_socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def over(sock: socket.socket) -> RawClient:
    """A RawClient on a socket the test keeps a handle on (to reset it, for one)."""

    def close() -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()

    sock.settimeout(None)
    return RawClient(lambda: sock.recv(65536), sock.sendall, close)


def signed_in(port: int, **options: object) -> RawClient:
    client = RawClient.connect("127.0.0.1", port)
    client.initialize({"authToken": TOKEN, "maxTokens": 2, "multiline": "never", **options})
    assert client.wait_ready()["state"] == "ready"
    return client


def assert_served(server: RawClient, port: int) -> None:
    """A client with the token gets in, sees none of an earlier client's documents, is served."""
    client = signed_in(port)
    status = client.status()
    assert status["documents"] == 0 and status["shownCompletions"] == 0
    assert client.inline(URI, 1, 8) == []  # the earlier client's document is not open here
    client.open("file:///work/mine.py", "x = ")
    assert client.inline("file:///work/mine.py", 0, 4)[0]["insertText"] == "aa"
    client.close()
    assert server.proc.poll() is None


def assert_refused(port: int) -> None:
    """A client without the token can do nothing: its first request is refused, then it is cut."""
    intruder = RawClient.connect("127.0.0.1", port)
    reply = intruder.response(
        intruder.request_async("workspace/executeCommand", {"command": "codetailor.status"})
    )
    assert reply["error"]["code"] == -32001, reply
    assert intruder.wait_closed()


def reset(sock: socket.socket, client: RawClient) -> None:
    """Close with a TCP reset (RST) instead of an orderly FIN.

    SHUT_RD first (it sends nothing): a socket closed while the client's reader
    thread is blocked in recv() is not really closed until that recv returns.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.shutdown(socket.SHUT_RD)
    assert client.wait_closed()
    sock.close()


def sign_in_and_open(port: int) -> tuple[socket.socket, RawClient]:
    sock = raw_socket(port)
    client = over(sock)
    client.initialize({"authToken": TOKEN, "maxTokens": 2})
    assert client.wait_ready()["state"] == "ready"
    client.open(URI, SECRET_TEXT)
    assert client.wait_status(lambda s: s["documents"] == 1, "didOpen not seen")
    return sock, client


def test_a_reset_connection_leaves_nothing_for_the_next_client(tcp):
    server, port = tcp
    sock, client = sign_in_and_open(port)
    reset(sock, client)
    assert_refused(port)
    assert_served(server, port)


def test_a_message_that_breaks_the_reader_leaves_nothing_for_the_next_client(tcp):
    server, port = tcp
    sock, client = sign_in_and_open(port)
    nested = b"[" * 100_000 + b"]" * 100_000
    client.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(nested), nested))
    assert client.wait_closed()
    sock.close()
    assert_refused(port)
    assert_served(server, port)


def test_an_unauthenticated_exit_closes_only_its_own_connection(tcp):
    server, port = tcp
    intruder = RawClient.connect("127.0.0.1", port)
    intruder.notify("exit")
    assert intruder.wait_closed()
    assert server.proc.poll() is None
    assert_served(server, port)


def test_an_http_request_is_not_lsp(tcp):
    """What a web page's `fetch(..., {method: "POST", body})` with text/plain sends."""
    server, port = tcp
    lsp = frame({"jsonrpc": "2.0", "method": "exit"}) + frame(
        {
            "jsonrpc": "2.0",
            "method": "workspace/didChangeConfiguration",
            "params": {"settings": {"model": "evil/model"}},
        }
    )
    http = (
        b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: http://evil.example\r\n"
        b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: %d\r\n\r\n%s" % (len(lsp), lsp)
    )
    page = over(raw_socket(port))
    page.send_raw(http)
    assert page.wait_closed(timeout=5)
    assert server.proc.poll() is None
    assert_served(server, port)


def test_unknown_headers_close_the_connection(tcp):
    server, port = tcp
    client = over(raw_socket(port))
    client.send_raw(b"X-Anything: 1\r\n")
    assert client.wait_closed(timeout=5)
    assert_served(server, port)


def test_a_client_cannot_switch_to_a_hub_model(tcp):
    server, port = tcp
    client = signed_in(port)
    model = client.status()["model"]
    client.notify("workspace/didChangeConfiguration", {"settings": {"model": "evil/model"}})
    note = client.wait_for(lambda n: n["method"] == "window/showMessage")
    assert "evil/model" in note["params"]["message"]
    assert "--allow-client-models" in note["params"]["message"]
    status = client.status()
    assert status["model"] == model and status["state"] == "ready"
    assert status["settings"]["model"] != "evil/model"
    client.close()
    assert_served(server, port)


def test_a_silent_connection_locks_nobody_out_and_is_cut_at_the_deadline(tcp):
    server, port = tcp
    silent = over(raw_socket(port))
    trickle = raw_socket(port)
    trickling = over(trickle)
    started = time.monotonic()
    assert_served(server, port)  # while both are connected
    for byte in b"Content-Length: 1000":
        if trickling.closed:
            break
        try:
            trickle.sendall(bytes([byte]))
        except OSError:
            break
        time.sleep(0.2)
    assert trickling.wait_closed(timeout=AUTH_TIMEOUT_S + 5)
    assert silent.wait_closed(timeout=AUTH_TIMEOUT_S + 5)
    assert time.monotonic() - started < AUTH_TIMEOUT_S + 5
    assert_served(server, port)


def test_a_non_ascii_token_is_refused_without_a_traceback(tcp):
    server, port = tcp
    for token in ("pässwört", "s3cre\ud800", 12):
        intruder = RawClient.connect("127.0.0.1", port)
        reply = intruder.response(
            intruder.request_async(
                "initialize", {"capabilities": {}, "initializationOptions": {"authToken": token}}
            )
        )
        assert reply["error"]["code"] == -32001, reply
        assert "Traceback" not in json.dumps(reply) and "traceback" not in json.dumps(reply)
        assert intruder.wait_closed()
    assert_served(server, port)


def test_a_second_signed_in_client_is_refused_while_the_first_is_served(tcp):
    server, port = tcp
    first = signed_in(port)
    second = RawClient.connect("127.0.0.1", port)
    reply = second.response(
        second.request_async(
            "initialize", {"capabilities": {}, "initializationOptions": {"authToken": TOKEN}}
        )
    )
    assert reply["error"]["code"] == -32001 and "another client" in reply["error"]["message"]
    assert second.wait_closed()
    assert first.status()["state"] == "ready"
    first.close()
    assert_served(server, port)


def test_an_idle_signed_in_client_is_cut_after_the_idle_timeout(endless_model_dir: Path):
    server = RawClient.spawn(
        "--model",
        str(endless_model_dir),
        "--tcp",
        "127.0.0.1:0",
        "--idle-timeout",
        "1",
        env={"CODETAILOR_AUTH_TOKEN": TOKEN},
    )
    try:
        port = listening_port(server)
        idle = signed_in(port)
        assert idle.wait_closed(timeout=10)
        assert_served(server, port)
    finally:
        server.proc.terminate()
        server.close()
