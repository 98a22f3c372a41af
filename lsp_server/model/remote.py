"""An engine that asks an OpenAI-compatible `/v1/completions` server to continue a prompt.

It fits where the local `Engine` fits: the Completer calls
`generate(prompt_ids, ...)` and gets a `Generation` back. The prompt ids are
decoded with the local tokenizer (the prompt is always built by us, in the base
model's format; `suffix` is never sent: vLLM and SGLang ignore it) and sent as
`prompt` with `temperature: 0`, `stream: true` and the format's stop strings.
The adapter is chosen by sending its registered name as `model`.

The response streams as server-sent events. After each chunk the text so far is
re-encoded with the local tokenizer and the caller's stop predicate runs on it,
so scope and stop rules hold exactly as they do locally. On the predicate, the
deadline or the cancel event, the HTTP stream is closed (the socket shut down),
so the server stops generating.

Failures (unreachable server, 4xx/5xx, timeouts, malformed streams) never raise
and never hang: one log line, counts and the last error in `status()`, and an
empty `Generation` with stop reason "error". After a failure the engine backs
off: for a window that doubles with each consecutive failure, requests answer
empty at once (counted as `skipped`) instead of hammering a dead server.

The HTTP client is httpx2, the maintained continuation of httpx (already here:
huggingface_hub depends on it). Requests run synchronously on a reader thread,
so the caller's thread can notice a cancel within `POLL_S`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from lsp_server.model.engine import Generation, StopPredicate, StopReason, common_prefix_length

log = logging.getLogger("codetailor.remote")

API_KEY_ENV = "CODETAILOR_API_KEY"
# Names another environment variable to read the key from (e.g. a team's own).
API_KEY_ENV_NAME = "CODETAILOR_API_KEY_ENV"
POLL_S = 0.02  # how often the waiting thread looks at the cancel event and the deadline


class RemoteError(Exception):
    """Why a remote request failed, in one line."""


def completions_url(base: str) -> str:
    """`/v1/completions` under `base`, whether or not `base` already ends in `/v1`."""
    return f"{base}/completions" if base.endswith("/v1") else f"{base}/v1/completions"


def api_key_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The API key: `$CODETAILOR_API_KEY`, or the variable `$CODETAILOR_API_KEY_ENV` names."""
    env = os.environ if environ is None else environ
    name = env.get(API_KEY_ENV_NAME) or API_KEY_ENV
    return env.get(name) or None


@dataclass
class RemoteCounts:
    """What `codetailor.status` reports about the remote engine."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0  # answered empty at once during a backoff window
    cancelled: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # time.time()
    backoff_until: float = 0.0  # time.monotonic()


class RemoteEngine:
    """Greedy generation on an OpenAI-compatible completions server, streamed and cancellable."""

    cache = None  # no local KV cache: the server keeps its own (vLLM's prefix caching)

    def __init__(
        self,
        base_url: str,
        tokenizer: Any,
        *,
        model: str,
        stop_strings: Sequence[str] = (),
        api_key: str | None = None,
        connect_timeout: float = 3.0,
        read_timeout: float = 30.0,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        transport: httpx2.BaseTransport | None = None,
    ) -> None:
        """`model` is what the server knows the model (or adapter) by; `stop_strings` end a
        completion on the server (and are enforced locally through the caller's predicate);
        `read_timeout` bounds a stalled stream when the caller gives no deadline."""
        self.base_url = base_url.rstrip("/")
        self.url = completions_url(self.base_url)
        self.tokenizer = tokenizer
        self.model = model
        self.stop_strings = list(dict.fromkeys(s for s in stop_strings if s))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.counts = RemoteCounts()
        headers = {"Accept": "text/event-stream"}
        key = api_key if api_key is not None else api_key_from_env()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx2.Timeout(read_timeout, connect=connect_timeout)
        # TLS certificates are verified (the client's default); never turned off here.
        self._client = httpx2.Client(headers=headers, timeout=timeout, transport=transport)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def prefill(
        self,
        prompt: Sequence[int],
        cancel: threading.Event | None = None,
        *,
        chunk: int | None = None,
    ) -> int:
        """Nothing to warm here: the server keeps its own prefix cache (vLLM's automatic
        prefix caching); returns 0 tokens computed."""
        return 0

    def status(self) -> dict[str, Any]:
        c = self.counts
        left = max(0.0, c.backoff_until - time.monotonic())
        return {
            "url": self.base_url,
            "model": self.model,
            "requests": c.requests,
            "ok": c.ok,
            "errors": c.errors,
            "skipped": c.skipped,
            "cancelled": c.cancelled,
            "consecutiveFailures": c.consecutive_failures,
            "lastError": c.last_error,
            "lastErrorAt": c.last_error_at,
            "backoffSeconds": round(left, 2),
        }

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_new_tokens: int = 64,
        stop: StopPredicate | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        first_allowed: Sequence[int] | None = None,
        hint: Sequence[int] = (),
        prefill_deadline: float | None = None,
    ) -> Generation:
        """Continue `prompt` on the server; the same contract as `Engine.generate`.

        `first_allowed` cannot be enforced over this API, so the remote Completer
        is built without token healing and this argument is ignored; so are `hint`
        (drafting is the server's business) and `prefill_deadline` (the server's
        prefill cannot be split from its first token; `deadline` bounds the whole).
        """
        if not prompt:
            raise ValueError("the prompt must hold at least one token")
        started = time.monotonic()
        with self._lock:
            self.counts.requests += 1
            if max_new_tokens <= 0:
                return _generation([], "max_tokens", prompt, started, None)
            if cancel is not None and cancel.is_set():
                self.counts.cancelled += 1
                return _generation([], "cancelled", prompt, started, None)
            if time.monotonic() < self.counts.backoff_until:
                self.counts.skipped += 1
                return _generation([], "error", prompt, started, None)
            body = self._body(prompt, max_new_tokens)
            try:
                tokens, reason, first = self._stream(body, max_new_tokens, stop, deadline, cancel)
            except RemoteError as exc:
                self._failed(str(exc))
                return _generation([], "error", prompt, started, None)
            self.counts.consecutive_failures = 0
            self.counts.ok += 1
            self.counts.cancelled += reason == "cancelled"
            return _generation(tokens, reason, prompt, started, first)

    def _body(self, prompt: Sequence[int], max_new_tokens: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self.tokenizer.decode(list(prompt)),
            "max_tokens": max_new_tokens,
            "temperature": 0,
            "stream": True,
        }
        if self.stop_strings:
            body["stop"] = self.stop_strings
        return body

    def _failed(self, message: str) -> None:
        c = self.counts
        c.errors += 1
        c.consecutive_failures += 1
        c.last_error, c.last_error_at = message, time.time()
        wait = min(self.backoff_base * 2 ** (c.consecutive_failures - 1), self.backoff_max)
        c.backoff_until = time.monotonic() + wait
        log.warning("remote engine %s: %s; retrying in %.1f s", self.base_url, message, wait)

    def _stream(
        self,
        body: dict[str, Any],
        max_new_tokens: int,
        stop: StopPredicate | None,
        deadline: float | None,
        cancel: threading.Event | None,
    ) -> tuple[list[int], StopReason, float | None]:
        """(tokens, stop reason, when the first text arrived); raises RemoteError."""
        reader = _Reader(self._client, self.url, body)
        text = ""
        tokens: list[int] = []
        checked: list[int] = []
        first: float | None = None
        # A server that ignores max_tokens must not stream forever.
        ceiling = 4 * max_new_tokens + 16
        try:
            for chunk in reader.chunks(deadline, cancel):
                if isinstance(chunk, _End):
                    return tokens, chunk.reason, first
                if not chunk:
                    continue
                first = first or time.monotonic()
                text += chunk
                ids = self.tokenizer.encode(text, add_special_tokens=False)
                fired = _first_stop(ids, checked, stop)
                if fired is not None:
                    return ids[:fired], "stop", first
                tokens = checked = ids
                if len(ids) >= ceiling:
                    return ids, "max_tokens", first
            raise RemoteError("the stream ended without a finish reason")
        finally:
            reader.close()


def _first_stop(ids: list[int], checked: list[int], stop: StopPredicate | None) -> int | None:
    """The shortest prefix length of `ids` at which `stop` fires, skipping prefixes of `checked`
    (already seen not to fire)."""
    if stop is None:
        return None
    for n in range(common_prefix_length(checked, ids) + 1, len(ids) + 1):
        if stop(ids[:n]):
            return n
    return None


def _generation(
    tokens: list[int],
    reason: StopReason,
    prompt: Sequence[int],
    started: float,
    first: float | None,
) -> Generation:
    now = time.monotonic()
    first = first or now
    return Generation(
        tokens=list(tokens),
        stop_reason=reason,
        prompt_tokens=len(prompt),
        cached_tokens=0,
        prefill_ms=(first - started) * 1000,
        decode_ms=(now - first) * 1000,
    )


@dataclass(frozen=True)
class _End:
    reason: StopReason


FINISH_REASONS: dict[str, StopReason] = {"length": "max_tokens", "stop": "stop", "eos": "eos"}


class _Reader:
    """One streamed request on a daemon thread, handed over as a queue of events.

    The thread sends the request and puts each line of the body on the queue;
    `chunks` turns those into text pieces and an `_End`, checking the cancel
    event and the deadline between them. `close` shuts the socket down, which
    wakes the thread's blocked read and tells the server the client has gone.
    """

    def __init__(self, client: httpx2.Client, url: str, body: dict[str, Any]) -> None:
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._response: httpx2.Response | None = None
        self._guard = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, args=(client, url, body), name="codetailor-remote", daemon=True
        )
        self._thread.start()

    def _run(self, client: httpx2.Client, url: str, body: dict[str, Any]) -> None:
        try:
            with client.stream("POST", url, json=body) as response:
                with self._guard:
                    self._response = response
                if self._closed.is_set():
                    return
                if response.status_code >= 400:
                    detail = response.read()[:300].decode("utf-8", "replace")
                    self._events.put(("error", f"HTTP {response.status_code}: {detail.strip()}"))
                    return
                for line in response.iter_lines():
                    if self._closed.is_set():
                        return
                    self._events.put(("line", line))
                self._events.put(("eof", None))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one event
            if not self._closed.is_set():
                self._events.put(("error", _describe(exc)))

    def chunks(
        self, deadline: float | None, cancel: threading.Event | None
    ) -> Iterator[str | _End]:
        """Text pieces as they arrive, then one `_End`; raises RemoteError on a failure."""
        while True:
            if cancel is not None and cancel.is_set():
                yield _End("cancelled")
                return
            if deadline is not None and time.monotonic() >= deadline:
                yield _End("time")
                return
            try:
                kind, value = self._events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "error":
                raise RemoteError(value)
            if kind == "eof":
                return
            parsed = parse_sse_line(value)
            if parsed is None:
                continue
            text, finish = parsed
            if text:
                yield text
            if finish is not None:
                yield _End(finish)
                return

    def close(self) -> None:
        """Stop reading and close the connection, so the server stops generating."""
        self._closed.set()
        with self._guard:
            response = self._response
        if response is None:
            return
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):  # already closed
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader's blocked recv


def parse_sse_line(line: str) -> tuple[str, StopReason | None] | None:
    """One line of an SSE completions stream: (text, finish reason or None), or None when the
    line carries nothing to use. Raises RemoteError for an error event or a malformed body.
    """
    line = line.strip()
    if not line or line.startswith(":") or not line.startswith("data:"):
        return None  # blank separators, comments, `event:` and `id:` fields
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return "", "stop"
    try:
        chunk = json.loads(data)
    except ValueError:
        raise RemoteError(f"malformed stream: {data[:120]!r}") from None
    if not isinstance(chunk, dict):
        raise RemoteError(f"malformed stream: {data[:120]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteError(f"the server reported: {str(message)[:200]}")
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if "usage" in chunk:  # a usage-only chunk (stream_options)
            return None
        raise RemoteError(f"malformed stream: no choices in {data[:120]!r}")
    text = choices[0].get("text") or ""
    if not isinstance(text, str):
        raise RemoteError("malformed stream: choices[0].text is not a string")
    finish = choices[0].get("finish_reason")
    # The last piece of text may ride on the finishing chunk.
    return text, (FINISH_REASONS.get(str(finish), "stop") if finish else None)


def _describe(exc: BaseException) -> str:
    """One line for a transport failure, naming what the user can check."""
    if isinstance(exc, httpx2.ConnectError):
        return f"cannot connect ({_first_line(exc)})"
    if isinstance(exc, httpx2.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    if isinstance(exc, httpx2.RemoteProtocolError):
        return f"the connection broke mid-response ({_first_line(exc)})"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
