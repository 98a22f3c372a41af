"""The connection's lifecycle gate (`lsp_server.lsp.lifecycle`), message by message."""

from __future__ import annotations

from typing import Any

from lsp_server.lsp.lifecycle import (
    AUTH_FAILED,
    INVALID_REQUEST,
    SERVER_NOT_INITIALIZED,
    Action,
    Lifecycle,
    token_matches,
)


def request(method: str, params: Any = None, msg_id: int = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params}


def note(method: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": {}}


def initialize(token: object) -> dict[str, Any]:
    return request(
        "initialize", {"capabilities": {}, "initializationOptions": {"authToken": token}}
    )


def test_tokens_compare_as_utf8_bytes_whatever_is_sent():
    token = "pässwört".encode()
    assert token_matches("pässwört", token)
    for sent in ("passwort", "pässwört ", "\ud800", "", None, 12, ["pässwört"]):
        assert not token_matches(sent, token)


def test_without_the_token_nothing_but_initialize_gets_through():
    for message in (
        request("workspace/executeCommand"),
        initialize("wrong"),
        initialize("s3cret€"),
        request("initialize", "not an object"),
    ):
        verdict = Lifecycle("s3cret").judge(message)
        assert verdict.action is Action.HANG_UP and verdict.error[0] == AUTH_FAILED
    for message in (note("exit"), note("initialized"), {"jsonrpc": "2.0", "id": 1, "result": 1}):
        verdict = Lifecycle("s3cret").judge(message)
        assert verdict.action is Action.HANG_UP and verdict.error is None
    gate = Lifecycle("s3cret")
    sectioned = {"initializationOptions": {"codetailor": {"authToken": "s3cret"}}}
    assert gate.judge(request("initialize", sectioned)).action is Action.ADMIT
    assert not gate.authenticated  # until admitted (a free slot)
    gate.admitted()
    assert gate.judge(request("workspace/executeCommand")).action is Action.PASS


def test_lifecycle_errors_before_initialize_and_after_shutdown():
    gate = Lifecycle(None)
    verdict = gate.judge(request("textDocument/inlineCompletion"))
    assert verdict.action is Action.REFUSE and verdict.error[0] == SERVER_NOT_INITIALIZED
    assert gate.judge(note("textDocument/didOpen")).action is Action.DROP
    assert gate.judge(initialize(None)).action is Action.ADMIT
    gate.admitted()
    assert gate.judge(initialize(None)).action is Action.REFUSE  # only once
    assert gate.judge(note("textDocument/didOpen")).action is Action.PASS
    assert gate.judge(note("shutdown")).action is Action.DROP  # a request, or nothing
    assert gate.judge(note("initialize")).action is Action.DROP
    assert gate.judge(request("shutdown")).action is Action.PASS
    verdict = gate.judge(request("textDocument/completion"))
    assert verdict.action is Action.REFUSE and verdict.error[0] == INVALID_REQUEST
    assert gate.judge(note("textDocument/didChange")).action is Action.DROP
    assert gate.judge(note("exit")).status == 0


def test_exit_without_shutdown_is_status_1():
    gate = Lifecycle(None)
    verdict = gate.judge(note("exit"))
    assert verdict.action is Action.EXIT and verdict.status == 1
