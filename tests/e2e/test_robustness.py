"""The server survives what broken clients and odd files send, and keeps answering after.

One server (on the tiny "endless" model, which always completes with "a"s) serves
the whole module; each test ends by checking that a valid request still works.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import spawn
from tests.e2e.rawclient import RawClient, frame

URI = "file:///work/robust.py"
TEXT = "def add(a, b):\n    return a + b\n\nx = add(1, "
OPTIONS = {"maxTokens": 4, "multiline": "never"}


@pytest.fixture(scope="module")
def server(endless_model_dir: Path):
    client = spawn(endless_model_dir, options=OPTIONS)
    client.open(URI, TEXT)
    yield client
    client.close()


def assert_still_answering(server: RawClient) -> None:
    items = server.inline(URI, 3, len("x = add(1, "))
    assert items and items[0]["insertText"] == "aaaa"
    assert server.proc.poll() is None


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_malformed_json_is_dropped(server):
    server.send_raw(b"Content-Length: 10\r\n\r\n{not json}")
    server.send_raw(b"Content-Length: 2\r\n\r\n[]")
    server.send_raw(b'Content-Length: 17\r\n\r\n{"jsonrpc": "2.0"')  # cut short by the length
    assert_still_answering(server)


def test_a_too_short_content_length_resynchronises(server):
    body = json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}).encode()
    server.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(body) - 9, body))
    assert_still_answering(server)


def test_a_too_long_content_length_does_not_lose_the_next_message(server):
    body = json.dumps({"jsonrpc": "2.0", "method": "initialized", "params": {}}).encode()
    request = {
        "jsonrpc": "2.0",
        "id": "after-bad-length",
        "method": "workspace/executeCommand",
        "params": {"command": "codetailor.status"},
    }
    bad = b"Content-Length: %d\r\n\r\n%s" % (len(body) + 40, body)
    server.send_raw(bad + frame(request))
    assert server.response("after-bad-length")["result"]["state"] == "ready"
    assert_still_answering(server)


def test_headers_without_a_length_and_junk_between_messages(server):
    server.send_raw(b"Content-Type: application/json\r\n\r\n")
    server.send_raw(b"Content-Length: 99999999999\r\n\r\n")
    server.send_raw(b"\x00\xff garbage \r\n")
    assert_still_answering(server)


def test_unknown_methods(server):
    reply = server.response(server.request_async("codetailor/noSuchMethod", {}))
    assert reply["error"]["code"] == -32601
    server.notify("codetailor/noSuchNotification", {"x": 1})
    server.notify("$/someExtension", None)
    assert_still_answering(server)


def test_invalid_params_get_an_error_response(server):
    reply = server.response(
        server.request_async("textDocument/inlineCompletion", {"position": "here"})
    )
    assert reply["error"]["code"] == -32602
    reply = server.response(
        server.request_async(
            "textDocument/inlineCompletion",
            {"textDocument": {"uri": URI}, "position": {"line": -1, "character": 0}, "context": {}},
        )
    )
    assert "error" in reply
    assert_still_answering(server)


def test_positions_past_the_end_of_a_line_or_the_document(server):
    assert server.inline(URI, 0, 10_000)[0]["insertText"] == "aaaa"
    assert server.inline(URI, 10_000, 3)[0]["insertText"] == "aaaa"
    result = server.request(
        "textDocument/completion",
        {"textDocument": {"uri": URI}, "position": {"line": 10_000, "character": 99}},
    )
    edit = result["items"][0]["textEdit"]
    assert edit["range"]["end"] == {"line": 3, "character": len("x = add(1, ")}
    assert_still_answering(server)


def test_unknown_uris(server):
    assert server.inline("file:///never/opened.py", 0, 0) == []
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": "file:///never/opened.py", "version": 2},
            "contentChanges": [{"text": "x"}],
        },
    )
    server.notify("textDocument/didClose", {"textDocument": {"uri": "file:///never/opened.py"}})
    server.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": "not a uri at all", "version": 2}, "contentChanges": []},
    )
    assert_still_answering(server)


def test_a_5_mb_file(server):
    line = "    total = compute_something(alpha, beta, gamma)  # a typical line\n"
    text = "def big():\n" + line * (5 * 2**20 // len(line))
    uri = "file:///work/big.py"
    server.open(uri, text)
    lines = text.count("\n")
    started = time.monotonic()
    assert server.inline(uri, lines, 0, timeout=60)[0]["insertText"] == "aaaa"
    end_of_line = len(line) - 1  # after "# a typical line" (mid-line, no completion would help)
    (item,) = server.inline(uri, lines // 2, end_of_line, timeout=60)
    # The item replaces the word before the cursor with that word and the completion.
    assert item["insertText"] == "line" + "aaaa"
    assert item["range"]["start"] == {"line": lines // 2, "character": end_of_line - len("line")}
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": lines, "character": 0},
                        "end": {"line": lines, "character": 0},
                    },
                    "text": "result = ",
                }
            ],
        },
    )
    assert server.inline(uri, lines, 9, timeout=60)[0]["insertText"] == "aaaa"
    assert time.monotonic() - started < 60
    server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    assert_still_answering(server)


def test_binary_and_invalid_utf8_content(server):
    # invalid UTF-8 inside a frame: the frame is dropped
    body = b'{"jsonrpc": "2.0", "method": "initialized", "params": {"x": "\xff\xfe"}}'
    server.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    # NUL bytes and control characters: a binary file gets no completion, but an answer
    server.open("file:///work/blob.bin", "\x00\x01\x02ELF\x7f" * 100, language="plaintext")
    assert server.inline("file:///work/blob.bin", 0, 5) == []
    # a lone surrogate (broken JSON escapes from a client) is completed around
    server.open("file:///work/surrogate.py", "s = '\ud800'\nt = ")
    assert server.inline("file:///work/surrogate.py", 1, 4)[0]["insertText"] == "aaaa"
    assert_still_answering(server)


def test_emoji_and_other_non_bmp_characters_use_utf16_columns(server):
    uri = "file:///work/emoji.py"
    line = 'x = "😋𝔘" + fo'  # two characters outside the BMP: 2 UTF-16 units each
    server.open(uri, line)
    col = len(line.encode("utf-16-le")) // 2  # 15, while len(line) is 13
    assert col == len(line) + 2
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": uri, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": 0, "character": col},
                        "end": {"line": 0, "character": col},
                    },
                    "text": "o_b",
                }
            ],
        },
    )
    result = server.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": 0, "character": col + 3}},
    )
    (item,) = result["items"]
    assert item["textEdit"]["newText"] == "foo_baaaa"
    assert item["textEdit"]["range"] == {
        "start": {"line": 0, "character": col - 2},
        "end": {"line": 0, "character": col + 3},
    }
    assert_still_answering(server)


def test_a_thousand_rapid_changes_each_with_a_request(server):
    uri = "file:///work/rapid.py"
    server.open(uri, "name = ")
    ids = []
    for i in range(1000):
        server.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": i + 2},
                "contentChanges": [
                    {
                        "range": {
                            "start": {"line": 0, "character": 7 + i},
                            "end": {"line": 0, "character": 7 + i},
                        },
                        "text": "x",
                    }
                ],
            },
        )
        ids.append(
            server.request_async(
                "textDocument/inlineCompletion",
                {
                    "textDocument": {"uri": uri},
                    "position": {"line": 0, "character": 8 + i},
                    "context": {"triggerKind": 2},
                },
            )
        )
    replies = [server.response(i, timeout=120) for i in ids]
    assert all("result" in r for r in replies)
    assert (
        replies[-1]["result"]["items"][0]["insertText"] == "x" * 1000 + "aaaa"
    )  # word + completion
    result = server.request(
        "textDocument/completion",
        {"textDocument": {"uri": uri}, "position": {"line": 0, "character": 1007}},
    )
    assert result["items"][0]["textEdit"]["newText"] == "x" * 1000 + "aaaa"
    assert_still_answering(server)


def test_memory_stays_bounded_over_a_long_session(server):
    def session(rounds: int) -> None:
        for i in range(rounds):
            uri = f"file:///work/many/{i}.py"
            server.open(uri, f"value_{i} = {i}\n" * 20 + "result = ")
            server.inline(uri, 20, 9)
            server.inline(uri, 10, 3)
            server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})

    session(20)  # warm up: caches fill to their caps
    before = rss_mb(server.proc.pid)
    session(100)
    after = rss_mb(server.proc.pid)
    status = server.request("workspace/executeCommand", {"command": "codetailor.status"})
    assert status["cache"]["entries"] <= status["cache"]["maxEntries"]
    assert status["cache"]["tokens"] <= status["cache"]["maxTokens"]
    assert status["shownCompletions"] <= 16
    assert status["documents"] <= 6  # only this module's documents that are still open
    assert after - before < 40, (before, after)
    assert_still_answering(server)


def test_a_deeply_nested_message(server):
    """200 KB of nesting: too deep for the JSON parser (RecursionError, not ValueError)."""
    nested = b"[" * 100_000 + b"]" * 100_000
    body = b'{"jsonrpc": "2.0", "id": "deep", "method": "x", "params": %s}' % nested
    server.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    server.send_raw(b"Content-Length: %d\r\n\r\n%s" % (len(nested), nested))
    assert_still_answering(server)


def test_requests_before_initialize_and_after_shutdown(tiny_model_dir: Path):
    client = RawClient.spawn("--model", str(tiny_model_dir))
    try:
        reply = client.response(client.request_async("textDocument/completion", {}))
        assert reply["error"]["code"] == -32002  # ServerNotInitialized
        client.open("file:///work/early.py", "x = ")  # a notification before: dropped
        client.initialize({"maxTokens": 2})
        assert client.status()["documents"] == 0
        assert client.request("shutdown") is None
        for method in ("workspace/executeCommand", "textDocument/completion", "shutdown"):
            reply = client.response(client.request_async(method, {"command": "codetailor.status"}))
            assert reply["error"]["code"] == -32600  # InvalidRequest
        client.notify("exit")
        assert client.proc.wait(timeout=10) == 0
    finally:
        client.close()
