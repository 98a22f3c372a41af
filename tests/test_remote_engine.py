"""The remote engine against scripted HTTP responses: request shape, streaming, stop rules,
errors, backoff, cancellation, deadlines, the first-token bound and the pace it learns, and
the bounds on what a stream may send. No server, no model: a character tokenizer."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx2
import pytest

from lsp_server.model.remote import (
    RemoteEngine,
    api_key_from_env,
    parse_sse_event,
    parse_sse_line,
    sse_logprobs,
)
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
        "cache_prompt": True,  # llama-server's prefix cache
        "logprobs": 1,
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


class Clock:
    """A clock the test moves: the scripted server advances it by its prefill time."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_first_token_time_teaches_the_window_and_the_budget_counts_from_it():
    clock = Clock()

    def prefill_then_answer(request: httpx2.Request) -> httpx2.Response:
        clock.now += 3.0  # a 3 s prefill: longer than the 2 s decoding budget
        return streaming(sse("pass"))

    engine = engine_for(Script(prefill_then_answer), clock=clock, window_tokens=4096)
    assert engine.window_for(8.0) == 512  # nothing known yet
    started = clock.now
    result = engine.generate(
        [1] * 1000, max_new_tokens=8, deadline=started + 2.0, prefill_deadline=started + 8.0
    )
    assert CharTokenizer().decode(result.tokens) == "pass"  # the budget ran from the first token
    assert (result.stop_reason, round(result.prefill_ms)) == ("max_tokens", 3000)
    status = engine.status()
    assert (status["lastFirstTokenMs"], status["prefillTokensPerSecond"]) == (3000.0, 333.3)
    assert engine.window_for(8.0) == 1024  # 333 tokens/s * 8 s * 0.7: 1,866 tokens
    assert engine.window_for(2.0) == 256  # the floor
    assert engine.window_for(None) == 4096  # no first-token bound: the whole window


def late_server(release: threading.Event, closed: threading.Event) -> Script:
    """A server that prefills until `release` is set, then answers "late"."""

    def respond(request: httpx2.Request) -> httpx2.Response:
        def body() -> Iterator[bytes]:
            try:
                yield b": prefilling\n\n"
                release.wait(BOUND_S)
                yield from sse("late")
            finally:
                closed.set()

        return streaming(body())

    return Script(respond)


def ask(engine: RemoteEngine, prompt: list[int], first_token_s: float = 0.2):
    started = time.monotonic()
    result = engine.generate(
        prompt, max_new_tokens=8, deadline=started + 5, prefill_deadline=started + first_token_s
    )
    assert time.monotonic() - started < 2.0
    return result


def test_no_first_token_in_time_is_its_own_reason_and_a_repeat_continues_the_late_stream(caplog):
    release, closed = threading.Event(), threading.Event()
    script = late_server(release, closed)
    engine = engine_for(script, window_tokens=4096)
    prompt = [1] * 1024
    with caplog.at_level(logging.WARNING, logger="codetailor.remote"):
        for _ in range(4):  # the same request again (the user waits): the same stream
            result = ask(engine, prompt)
            assert (result.tokens, result.stop_reason) == ([], "first_token")
    assert len(script.requests) == 1 and not closed.is_set()  # the engine's prefill goes on
    release.set()
    late = ask(engine, prompt)
    assert CharTokenizer().decode(late.tokens) == "late" and late.stop_reason == "max_tokens"
    assert len(script.requests) == 1
    status = engine.status()
    assert (status["firstTokenTimeouts"], status["continued"], status["errors"]) == (4, 4, 0)
    assert status["lastFirstTokenMs"] > 200  # timed from the stream's first request
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "firstTokenTimeoutMs" in lines[0] and "too slow" in lines[0]


def test_another_prompt_closes_the_late_stream_and_the_window_shrinks():
    release, closed = threading.Event(), threading.Event()
    script = late_server(release, closed)
    engine = engine_for(script, window_tokens=4096)
    assert engine.window_for(0.2) == 512
    assert ask(engine, [1] * 512).stop_reason == "first_token"
    assert engine.window_for(0.2) == 512  # kept for a repeat of the same prompt
    assert ask(engine, [2] * 256).stop_reason == "first_token"
    release.set()
    assert closed.wait(BOUND_S)  # the first stream was closed, so the server stops
    assert len(script.requests) == 2 and engine.status()["continued"] == 0
    assert engine.window_for(0.2) == 256  # it took longer than the bound: halved
    engine.close()


def test_a_server_that_refuses_cache_prompt_is_asked_again_without_it():
    def strict(request: httpx2.Request) -> httpx2.Response:
        if "cache_prompt" in json.loads(request.content):
            detail = "Unexpected fields in the request: {'cache_prompt'}"
            return httpx2.Response(422, json={"detail": detail})
        return streaming(sse("ok"))

    script = Script(strict)
    engine = engine_for(script)
    assert CharTokenizer().decode(engine.generate([1], max_new_tokens=2).tokens) == "ok"
    assert CharTokenizer().decode(engine.generate([1], max_new_tokens=2).tokens) == "ok"
    assert ["cache_prompt" in script.body(n) for n in range(3)] == [True, False, False]
    assert (engine.status()["errors"], engine.status()["cachePrompt"]) == (0, False)


def scored_sse(*pieces: tuple[str, list[float]], split: bool = False) -> list[bytes]:
    """An SSE body whose events carry logprobs in the OpenAI completions shape (one token
    per character, as CharTokenizer's; with `split`, two characters in one server token)."""
    events = []
    for text, values in pieces:
        tokens = [text] if split else list(text)
        logprobs = {"tokens": tokens, "token_logprobs": values, "top_logprobs": None}
        events.append({"choices": [{"text": text, "finish_reason": None, "logprobs": logprobs}]})
    events.append({"choices": [{"text": "", "finish_reason": "length"}]})
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


def test_the_servers_logprobs_fill_the_generation():
    script = Script(lambda r: streaming(scored_sse(("wo", [-0.5, -0.25]), ("rd", [-1.0, 0.0]))))
    result = engine_for(script).generate([1], max_new_tokens=4)
    assert CharTokenizer().decode(result.tokens) == "word"
    assert result.logprobs == (-0.5, -0.25, -1.0, 0.0)
    assert result.entropies == ()  # the API sends no distribution


def test_logprobs_follow_a_stop_cut_and_are_dropped_when_tokens_differ():
    body = scored_sse(("wo", [-0.5, -0.25]), ("rd", [-1.0, 0.0]))
    cut = engine_for(Script(lambda r: streaming(body))).generate(
        [1], max_new_tokens=4, stop=lambda toks: toks[-1] == ord("r")
    )
    assert (CharTokenizer().decode(cut.tokens), cut.logprobs) == ("wor", (-0.5, -0.25, -1.0))
    # The server's token "wo" is two of ours: no one-for-one scores.
    other = scored_sse(("wo", [-0.5]), ("rd", [-1.0]), split=True)
    result = engine_for(Script(lambda r: streaming(other))).generate([1], max_new_tokens=4)
    assert CharTokenizer().decode(result.tokens) == "word" and result.logprobs == ()
    plain = engine_for(Script(lambda r: streaming(sse("ok")))).generate([1], max_new_tokens=2)
    assert plain.logprobs == ()


def test_sse_logprobs_in_both_shapes_and_malformed():
    completions = {"logprobs": {"tokens": ["a", "b"], "token_logprobs": [-1, -0.5]}}
    assert sse_logprobs(completions) == [("a", -1.0), ("b", -0.5)]
    chat = {"logprobs": {"content": [{"token": "a", "logprob": -2.0, "top_logprobs": []}]}}
    assert sse_logprobs(chat) == [("a", -2.0)]
    assert sse_logprobs({"logprobs": {"tokens": ["a"], "token_logprobs": [None]}}) == []
    assert sse_logprobs({"logprobs": {"tokens": ["a", "b"], "token_logprobs": [-1]}}) == []
    assert sse_logprobs({"logprobs": None}) == []
    line = {"choices": [{"text": "a", "finish_reason": None} | completions]}
    assert parse_sse_event(f"data: {json.dumps(line)}") == ("a", None, [("a", -1.0), ("b", -0.5)])


def test_a_server_that_refuses_logprobs_is_asked_again_without_them():
    def strict(request: httpx2.Request) -> httpx2.Response:
        if "logprobs" in json.loads(request.content):
            return httpx2.Response(400, json={"error": "logprobs is not supported"})
        return streaming(sse("ok"))

    script = Script(strict)
    engine = engine_for(script)
    result = engine.generate([1], max_new_tokens=2)
    assert CharTokenizer().decode(result.tokens) == "ok" and result.logprobs == ()
    assert ["logprobs" in script.body(n) for n in range(2)] == [True, False]
    assert "cache_prompt" in script.body(1)  # only the refused field goes
    assert (engine.status()["errors"], engine.status()["logprobs"]) == (0, False)


def endless(piece: bytes) -> Iterator[bytes]:
    while True:
        yield piece


def nested(depth: int) -> bytes:
    return b"data: " + b"[" * depth + b"]" * depth + b"\n\n"


@pytest.mark.parametrize(
    ("chunks", "error"),
    [
        ([b"data: " + b"x" * (20 << 20) + b"\n\n"], "more than"),  # one 20 MB chunk
        (endless(b"data: " + b"a" * 8192), "a line longer than"),  # a line that never ends
        (endless(b'data: {"choices": [{"text": ""}]}\n\n'), "more than"),  # a body without end
        ([nested(100_000)], "a line longer than"),  # nested 100,000 deep
        ([nested(30_000)], "malformed stream"),  # nested deep, within a line
        ([b'data: {"error": ' + b"[" * 30_000 + b"]" * 30_000 + b"}\n\n"], "malformed"),
        ([b'data: {"choices": [{"text": "a", "finish_reason": [1]}]}\n\n'], "finish_reason"),
    ],
    ids=["chunk", "line", "total", "nested", "nested-json", "nested-error", "finish"],
)
def test_every_malformed_stream_is_bounded_counted_and_backed_off(chunks, error):
    engine = engine_for(Script(lambda r: streaming(chunks)), backoff_base=10.0)
    started = time.monotonic()
    result = engine.generate([1], max_new_tokens=8, deadline=started + 60)
    assert time.monotonic() - started < BOUND_S
    assert (result.tokens, result.stop_reason) == ([], "error")
    status = engine.status()
    assert error in status["lastError"]
    assert (status["errors"], status["consecutiveFailures"]) == (1, 1)
    assert status["backoffSeconds"] > 5  # the next request is not sent
    assert engine.generate([1], max_new_tokens=8).stop_reason == "error"
    assert engine.status()["skipped"] == 1


def test_an_error_body_is_read_no_further_than_the_message_needs():
    script = Script(lambda r: streaming(endless(b"overloaded " * 1000), status=503))
    engine = engine_for(script)
    assert engine.generate([1], max_new_tokens=4).stop_reason == "error"
    last = engine.status()["lastError"]
    assert last.startswith("HTTP 503: overloaded") and len(last) < 400


def test_text_past_what_was_asked_for_is_not_read():
    line = {"choices": [{"text": "word " * 12_000, "finish_reason": None}]}
    script = Script(lambda r: streaming([f"data: {json.dumps(line)}\n\n".encode()]))
    result = engine_for(script).generate([1], max_new_tokens=4)
    assert result.stop_reason == "max_tokens" and len(result.tokens) == 4 * 4 + 16


def test_the_first_token_bound_holds_while_a_server_trickles_a_line():
    def trickle(request: httpx2.Request) -> httpx2.Response:
        def body() -> Iterator[bytes]:
            yield b"data: "
            for _ in range(int(BOUND_S / 0.01)):
                time.sleep(0.01)
                yield b" "

        return streaming(body())

    engine = engine_for(Script(trickle))
    started = time.monotonic()
    result = engine.generate([1], max_new_tokens=4, prefill_deadline=started + 0.3)
    assert result.stop_reason == "first_token" and time.monotonic() - started < 2.0


def test_the_completer_sends_the_prompt_the_engine_prefills_within_the_first_token_bound():
    from lsp_server.completion.completer import Completer
    from lsp_server.completion.prompt import PREFIX_ONLY

    script = Script(lambda r: streaming(sse("1")))
    engine = engine_for(script, window_tokens=4096)
    completer = Completer(
        engine,
        CharTokenizer(),
        PREFIX_ONLY,
        window_tokens=4096,
        token_healing=False,
        window_limit=engine.window_for,
    )
    text = "".join(f"line_{i} = {i}\n" for i in range(1000)) + "x = "
    completer.complete(text, len(text), max_tokens=2, prefill_budget=8.0)
    assert 300 < len(script.body()["prompt"]) <= 512  # nothing learned yet: the first window
    engine.pace.samples.clear()  # (the scripted server answered at once)
    engine.pace.timed_out(512, 8.0)  # too slow for it
    completer.complete(text, len(text), max_tokens=2, prefill_budget=8.0)
    assert 100 < len(script.body()["prompt"]) <= 256
    completer.complete(text, len(text), max_tokens=2)  # no bound: the whole window
    assert len(script.body()["prompt"]) > 3000
