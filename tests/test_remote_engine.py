"""The remote engine against scripted HTTP responses: request shape, streaming, stop rules,
errors, backoff, cancellation and deadlines. No server, no model: a character tokenizer."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from lsp_server.model.remote import RemoteEngine, api_key_from_env, parse_sse_line
from tests.fixtures.fakes import CharTokenizer

BOUND_S = 5.0  # every wait in these tests ends by then


def sse(*pieces: str, finish: str | None = "length", done: bool = True) -> list[bytes]:
    """An SSE body as a server streams it: one event per piece, then the finish, then [DONE]."""
    events = [{"choices": [{"index": 0, "text": p, "finish_reason": None}]} for p in pieces]
    if finish:
        events.append({"choices": [{"index": 0, "text": "", "finish_reason": finish}]})
    lines = [f"data: {json.dumps(e)}\n\n".encode() for e in events]
    return lines + ([b"data: [DONE]\n\n"] if done else [])


class Script:
    """A mock server: records requests and answers each with `respond(request)`."""

    def __init__(self, respond: Callable[[httpx2.Request], httpx2.Response]) -> None:
        self.respond = respond
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.respond(request)

    def body(self, n: int = -1) -> dict[str, Any]:
        return json.loads(self.requests[n].content)


def engine_for(script: Script, **options: Any) -> RemoteEngine:
    options.setdefault("backoff_base", 0.2)
    return RemoteEngine(
        "http://engine.test:8000",
        CharTokenizer(),
        model="base",
        transport=httpx2.MockTransport(script),
        **options,
    )


def streaming(chunks: list[bytes] | Iterator[bytes], status: int = 200) -> httpx2.Response:
    return httpx2.Response(
        status, content=iter(chunks), headers={"content-type": "text/event-stream"}
    )


def test_sse_lines():
    assert parse_sse_line("") is None
    assert parse_sse_line(": keep-alive") is None
    assert parse_sse_line("event: completion") is None
    assert parse_sse_line("data: [DONE]") == ("", "stop")
    chunk = {"choices": [{"text": "ab", "finish_reason": None}]}
    assert parse_sse_line(f"data: {json.dumps(chunk)}") == ("ab", None)
    chunk["choices"][0] |= {"text": "c", "finish_reason": "length"}
    assert parse_sse_line(f"data:{json.dumps(chunk)}") == ("c", "max_tokens")
    assert parse_sse_line('data: {"usage": {"prompt_tokens": 3}}') is None


@pytest.mark.parametrize(
    "line",
    ["data: {not json", 'data: {"error": {"message": "model not found"}}', 'data: {"id": 1}'],
)
def test_bad_sse_lines_raise(line: str):
    from lsp_server.model.remote import RemoteError

    with pytest.raises(RemoteError):
        parse_sse_line(line)


def test_the_request_is_our_prompt_greedy_streamed_with_stop_strings(monkeypatch):
    monkeypatch.setenv("CODETAILOR_API_KEY", "k3y")
    script = Script(lambda r: streaming(sse("wor", "ld")))
    engine = engine_for(script, stop_strings=["<|endoftext|>", "<file_sep>", ""])
    result = engine.generate(CharTokenizer().encode("hello "), max_new_tokens=5)
    assert CharTokenizer().decode(result.tokens) == "world"
    assert result.stop_reason == "max_tokens"
    assert (result.prompt_tokens, result.cached_tokens) == (6, 0)
    assert script.body() == {
        "model": "base",
        "prompt": "hello ",
        "max_tokens": 5,
        "temperature": 0,
        "stream": True,
        "stop": ["<|endoftext|>", "<file_sep>"],
    }
    request = script.requests[0]
    assert request.url == "http://engine.test:8000/v1/completions"
    assert request.headers["authorization"] == "Bearer k3y"
    assert engine.status()["ok"] == 1


def test_the_api_key_comes_from_the_variable_named_by_codetailor_api_key_env():
    env = {"CODETAILOR_API_KEY_ENV": "TEAM_KEY", "TEAM_KEY": "t", "CODETAILOR_API_KEY": "c"}
    assert api_key_from_env(env) == "t"
    assert api_key_from_env({"CODETAILOR_API_KEY": "c"}) == "c"
    assert api_key_from_env({}) is None


def test_the_stop_predicate_cuts_the_text_and_closes_the_stream():
    finished = threading.Event()

    def body() -> Iterator[bytes]:
        try:
            yield from sse("x = 1", "\ny = 2", "\nz = 3")
        finally:
            finished.set()  # the response was closed (or read to the end)

    script = Script(lambda r: streaming(body()))
    seen: list[str] = []

    def stop(tokens: list[int]) -> bool:
        seen.append(CharTokenizer().decode(tokens))
        return "\n" in seen[-1]

    result = engine_for(script).generate([ord("#")], max_new_tokens=64, stop=stop)
    assert CharTokenizer().decode(result.tokens) == "x = 1\n"
    assert result.stop_reason == "stop"
    assert seen[:5] == ["x", "x ", "x =", "x = ", "x = 1"]  # each prefix checked once
    assert finished.wait(BOUND_S)


def test_an_http_error_is_logged_once_answered_empty_and_backed_off(caplog):
    answers = iter([httpx2.Response(503, text="overloaded"), streaming(sse("ok"))])
    script = Script(lambda r: next(answers))
    engine = engine_for(script)
    with caplog.at_level(logging.WARNING, logger="codetailor.remote"):
        failed = engine.generate([1], max_new_tokens=4)
        started = time.monotonic()
        skipped = engine.generate([1], max_new_tokens=4)
    assert failed.stop_reason == skipped.stop_reason == "error"
    assert failed.tokens == skipped.tokens == []
    assert time.monotonic() - started < 0.1  # answered at once, the server left alone
    assert len(script.requests) == 1
    status = engine.status()
    assert (status["errors"], status["skipped"], status["consecutiveFailures"]) == (1, 1, 1)
    assert "HTTP 503: overloaded" in status["lastError"]
    assert len(caplog.records) == 1 and "HTTP 503" in caplog.records[0].getMessage()
    deadline = time.monotonic() + BOUND_S
    while engine.status()["backoffSeconds"] > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    result = engine.generate([1], max_new_tokens=4)
    assert CharTokenizer().decode(result.tokens) == "ok"
    assert engine.status()["consecutiveFailures"] == 0


def test_backoff_doubles_with_each_failure_up_to_its_ceiling():
    engine = engine_for(Script(lambda r: httpx2.Response(500)), backoff_base=10.0, backoff_max=25.0)
    windows = []
    for _ in range(3):
        engine.counts.backoff_until = 0.0  # let the next request through
        engine.generate([1], max_new_tokens=1)
        windows.append(engine.counts.backoff_until - time.monotonic())
    assert [round(w) for w in windows] == [10, 20, 25]


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ([b"data: {oops\n\n"], "malformed stream"),
        (sse("half", finish=None, done=False), "ended without a finish reason"),
        ([b'data: {"error": "CUDA out of memory"}\n\n'], "CUDA out of memory"),
    ],
)
def test_a_broken_stream_is_an_empty_answer_with_the_reason_in_the_status(chunks, error):
    engine = engine_for(Script(lambda r: streaming(chunks)))
    result = engine.generate([1], max_new_tokens=8)
    assert (result.tokens, result.stop_reason) == ([], "error")
    assert error in engine.status()["lastError"]


def test_an_unreachable_server_is_an_empty_answer_not_an_exception():
    def refuse(request: httpx2.Request) -> httpx2.Response:
        raise httpx2.ConnectError("connection refused", request=request)

    engine = engine_for(Script(refuse))
    result = engine.generate([1], max_new_tokens=8)
    assert result.stop_reason == "error"
    assert engine.status()["lastError"].startswith("cannot connect")


def stalled_after(first: str, release: threading.Event, closed: threading.Event):
    """A response that sends `first`, then nothing until `release` is set."""

    def body() -> Iterator[bytes]:
        try:
            yield sse(first, finish=None, done=False)[0]
            release.wait(BOUND_S * 2)
            yield from sse("late")
        finally:
            closed.set()

    return lambda request: streaming(body())


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_cancel_and_the_deadline_end_a_stalled_stream_at_once(how: str):
    release, closed, first_chunk = threading.Event(), threading.Event(), threading.Event()
    engine = engine_for(Script(stalled_after("abc", release, closed)))
    cancel = threading.Event()

    def stop(tokens: list[int]) -> bool:
        first_chunk.set()
        return False

    def cancel_after_first_chunk() -> None:
        if first_chunk.wait(BOUND_S):
            cancel.set()

    if how == "cancel":
        threading.Thread(target=cancel_after_first_chunk, daemon=True).start()
        deadline = None
    else:
        deadline = time.monotonic() + 0.3
    started = time.monotonic()
    result = engine.generate([1], max_new_tokens=64, stop=stop, cancel=cancel, deadline=deadline)
    assert time.monotonic() - started < 2.0
    assert result.stop_reason == ("cancelled" if how == "cancel" else "time")
    assert CharTokenizer().decode(result.tokens) == "abc"
    release.set()  # the reader thread wakes, sees it was closed, and closes the response
    assert closed.wait(BOUND_S)
    assert engine.status()["errors"] == 0


def test_no_request_when_cancelled_before_it_starts_or_asked_for_no_tokens():
    script = Script(lambda r: streaming(sse("x")))
    engine = engine_for(script)
    cancel = threading.Event()
    cancel.set()
    assert engine.generate([1], max_new_tokens=4, cancel=cancel).stop_reason == "cancelled"
    assert engine.generate([1], max_new_tokens=0).stop_reason == "max_tokens"
    assert script.requests == []
    with pytest.raises(ValueError):
        engine.generate([], max_new_tokens=4)


def test_complete_with_an_engine_that_is_not_there_prints_an_empty_completion(
    tmp_path, tiny_model_dir, capsys
):
    from lsp_server.cli import main
    from tests.e2e.engine_server import free_port

    source = tmp_path / "m.py"
    source.write_text("def add(a, b):\n    return a\n")
    engine = f"openai:http://127.0.0.1:{free_port()}"
    argv = ["complete", f"{source}:2:13", "--model", str(tiny_model_dir), "--engine", engine]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    record = json.loads(captured.out)
    assert (record["text"], record["stop_reason"], record["engine"]) == ("", "error", engine)
    assert "cannot connect" in captured.err and captured.err.count("\n") == 1  # one log line


@pytest.mark.parametrize("command", ["complete", "serve"])
def test_a_bad_engine_is_one_line_and_exit_2(command, tmp_path, capsys):
    from lsp_server.cli import main

    source = tmp_path / "m.py"
    source.write_text("x = 1\n")
    argv = [command, *([f"{source}:1:1"] if command == "complete" else [])]
    assert main([*argv, "--engine", "vllm://gpu-box"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codetailor: error: --engine: expected local or openai:http(s)://")
