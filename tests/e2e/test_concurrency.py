"""Generation off the event loop, through a real server process: waiting for the model,
progress, supersession, cancellation, stale answers, typing-through, settings and
acceptance counts. The policy itself is unit-tested in tests/test_session.py.

The "endless" tiny model always continues with "a" and never stops by itself,
so with maxTokens 1024 a request runs for seconds: long enough to cancel. The
tests wait for the state they need (`codetailor.status` says which request the
model is working on) rather than for a time.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import spawn
from tests.e2e.rawclient import RawClient

URI = "file:///work/conc.py"
TEXT = "import os\n\nvalue = "
LONG = {"maxTokens": 1024, "timeBudgetMs": 60000, "multiline": "never"}


@pytest.fixture(scope="module")
def server(endless_model_dir: Path):
    client = spawn(endless_model_dir, options=LONG, ready=False)
    yield client
    client.close()


def status(server: RawClient) -> dict:
    return server.request("workspace/executeCommand", {"command": "codetailor.status"})


def configure(server: RawClient, **settings) -> None:
    server.notify("workspace/didChangeConfiguration", {"settings": {"codetailor": settings}})


def inline_async(server: RawClient, line: int, character: int, uri: str = URI) -> int:
    return server.request_async(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": uri},
            "position": {"line": line, "character": character},
            "context": {"triggerKind": 1},
        },
    )


def wait_generating(server: RawClient, since: int) -> int:
    """The number of the request the model started on after `since` requests."""
    return server.wait_generating(since)


def wait_generation_ended(server: RawClient, since: int) -> dict:
    """The engine's record of the generation that ended after `since` requests."""
    last = server.wait_status(
        lambda s: (s["lastGeneration"] or {}).get("request", 0) > since,
        "the generation did not end",
    )["lastGeneration"]
    return last


def empty_answers(server: RawClient) -> dict[str, int]:
    return status(server)["emptyAnswers"]


def test_a_request_before_the_model_is_ready_waits_for_it(server):
    waiting = "file:///work/waiting.py"
    server.open(waiting, TEXT)
    server.open(URI, TEXT)
    configure(server, maxTokens=4)
    msg_id = inline_async(server, 2, 8, uri=waiting)
    assert server.wait_ready()["state"] == "ready"
    reply = server.response(msg_id, timeout=60)
    assert reply["result"]["items"][0]["insertText"] == "aaaa"  # answered once loaded
    configure(server, **LONG)
    server.notify("textDocument/didClose", {"textDocument": {"uri": waiting}})
    after = status(server)
    assert after["counts"]["waited_for_model"] == 1
    assert after["emptyAnswers"]["not_ready"] == 0


def test_loading_reports_progress(server):
    (create,) = [
        r for r in server.server_requests if r["method"] == "window/workDoneProgress/create"
    ]
    token = create["params"]["token"]
    kinds = [
        n["params"]["value"]["kind"]
        for n in server.notifications
        if n["method"] == "$/progress" and n["params"]["token"] == token
    ]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "report" in kinds


def test_cancel_request_stops_the_generation(server):
    before = status(server)
    msg_id = inline_async(server, 2, 8)
    number = wait_generating(server, before["counts"].get("requests", 0))
    sent = time.monotonic()
    server.notify("$/cancelRequest", {"id": msg_id})
    reply = server.response(msg_id, timeout=5)
    assert time.monotonic() - sent < 2.0
    assert reply["error"]["code"] == -32800  # RequestCancelled
    last = wait_generation_ended(server, number - 1)
    assert last["request"] == number
    assert last["stop_reason"] == "cancelled"
    assert last["generated_tokens"] < 1024
    assert empty_answers(server)["cancelled"] == before["emptyAnswers"]["cancelled"] + 1


def test_a_newer_request_supersedes_the_older_one(server):
    before = status(server)
    first = inline_async(server, 2, 8)
    number = wait_generating(server, before["counts"].get("requests", 0))
    second = inline_async(server, 2, 7)
    # Answered empty once superseded (the endless model would never stop by itself).
    assert server.response(first, timeout=5)["result"]["items"] == []
    ended = wait_generation_ended(server, number - 1)
    assert ended["request"] == number and ended["stop_reason"] == "cancelled"
    superseded = before["emptyAnswers"]["superseded"] + 1
    assert empty_answers(server)["superseded"] == superseded
    wait_generating(server, number)  # the second request runs now
    server.notify("$/cancelRequest", {"id": second})
    assert server.response(second, timeout=5)["error"]["code"] == -32800


def test_an_answer_for_text_that_changed_meanwhile_is_empty(server):
    before = status(server)
    msg_id = inline_async(server, 2, 8)
    wait_generating(server, before["counts"].get("requests", 0))
    server.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": URI, "version": 2},
            "contentChanges": [
                {
                    "range": {
                        "start": {"line": 0, "character": 0},
                        "end": {"line": 0, "character": 0},
                    },
                    "text": "# edited\n",
                }
            ],
        },
    )
    assert server.response(msg_id, timeout=5)["result"]["items"] == []
    assert empty_answers(server)["stale"] == before["emptyAnswers"]["stale"] + 1


def test_typing_through_a_shown_completion_skips_the_model(server):
    configure(server, maxTokens=6)
    uri = "file:///work/typing.py"
    server.open(uri, "x = ")
    assert server.inline(uri, 0, 4)[0]["insertText"] == "aaaaaa"
    generated = status(server)["lastGeneration"]
    for typed in ("a", "aa", "aaa"):
        server.notify(
            "textDocument/didChange",
            {
                "textDocument": {"uri": uri, "version": 2 + len(typed)},
                "contentChanges": [{"text": "x = " + typed}],
            },
        )
        (item,) = server.inline(uri, 0, 4 + len(typed))
        # the item rewrites the typed word: what was typed, then the rest of the completion
        assert item["insertText"] == typed + "a" * (6 - len(typed))
        assert item["range"]["start"] == {"line": 0, "character": 4}
    after = status(server)
    assert after["lastGeneration"] == generated  # the model did not run again
    assert after["typingThroughHits"] >= 3


def test_acceptances_are_counted_from_the_item_command(server):
    uri = "file:///work/accept.py"
    server.open(uri, "y = ")
    (item,) = server.inline(uri, 0, 4)
    command = item["command"]
    assert command["command"] == "codetailor.accepted"
    before = status(server)["counts"].get("accepted", 0)
    server.request(
        "workspace/executeCommand",
        {"command": command["command"], "arguments": command.get("arguments", [])},
    )
    after = status(server)
    assert after["counts"]["accepted"] == before + 1
    assert after["counts"]["accepted_inline"] >= 1
    assert 0 < after["acceptanceRate"] <= 1


def test_invalid_settings_are_reported_once_and_defaults_kept(server):
    configure(server, maxTokens="many", multiline="sometimes")
    configure(server, maxTokens="many", multiline="sometimes")
    # A round trip: the server handles messages in order, so both configurations have
    # been handled, and any message they caused was sent, before this answer.
    status(server)
    messages = [
        n["params"]["message"]
        for n in server.notifications
        if n["method"] == "window/showMessage" and "maxTokens" in n["params"]["message"]
    ]
    assert len(messages) == 1
    settings = status(server)["settings"]
    assert settings["maxTokens"] == 6 and settings["multiline"] == "never"


def test_disable_and_multiline_settings_take_effect(server):
    uri = "file:///work/settings.py"
    server.open(uri, "def f():\n    ")
    configure(server, enable=False)
    assert server.inline(uri, 1, 4) == []
    configure(server, enable=True, multiline="always", maxTokens=3)
    assert server.inline(uri, 1, 4)[0]["insertText"] == "aaa"
    assert status(server)["lastGeneration"]["multiline"] is True
    configure(server, multiline="never")
    server.inline(uri, 1, 3)
    assert status(server)["lastGeneration"]["multiline"] is False
