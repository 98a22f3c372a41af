"""An engine that asks an OpenAI-compatible `/v1/completions` server to continue a prompt.

It fits where the local `Engine` fits: the Completer calls
`generate(prompt_ids, ...)` and gets a `Generation` back. The prompt ids are
decoded with the local tokenizer (the prompt is always built by us, in the base
model's format; `suffix` is never sent: vLLM and SGLang ignore it) and sent as
`prompt` with `temperature: 0`, `stream: true`, the format's stop strings and
`cache_prompt: true` (llama-server's prefix cache; vLLM ignores unknown fields,
`transformers serve` refuses them with a 422, after which the field is dropped).
The adapter is chosen by sending its registered name as `model`.

It also asks for `logprobs: 1` (the chosen token's log-probability, the
OpenAI completions field; dropped like `cache_prompt` by a server that refuses
it) and fills `Generation.logprobs` where the server's tokens are the local
re-encoding's one for one (the same tokenizer); entropies need the whole
distribution, which this API does not send, so they stay ().

The budget means what it means locally. The first token is due by
`prefill_deadline` (the `firstTokenTimeoutMs` setting: the engine's prefill
cannot be split from its first token); `deadline` bounds decoding and moves back
by the time the first token took. The engine learns its prefill pace from those
first tokens (`PrefillPace`) and `window_for` tells the Completer how long a
prompt fits the first-token bound, down to a floor. A stream whose first token
is late is not closed but parked (up to `PARK_S`), as the local engine keeps a
cut-short prefill: the engine's prefill goes on (`transformers serve` cannot stop
one midway anyway), a repeat of the same request continues it, and any other
request closes it and learns when (or whether) its first token came.

The response streams as server-sent events. After each chunk the text so far is
re-encoded with the local tokenizer and the caller's stop predicate runs on it,
so scope and stop rules hold exactly as they do locally. On the predicate, a
deadline or the cancel event, the HTTP stream is closed (the socket shut down),
so the server stops generating. A stream is bounded: each line, the whole body
and the text it carries (see `MAX_LINE_BYTES`, `MAX_STREAM_BYTES`,
`MAX_CHARS_PER_TOKEN`); past a bound it is a malformed stream.

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
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx2

from lsp_server.model.engine import Generation, StopPredicate, StopReason, common_prefix_length
from lsp_server.model.remote_pace import PrefillPace

log = logging.getLogger("codetailor.remote")

API_KEY_ENV = "CODETAILOR_API_KEY"
# Names another environment variable to read the key from (e.g. a team's own).
API_KEY_ENV_NAME = "CODETAILOR_API_KEY_ENV"
POLL_S = 0.02  # how often the waiting thread looks at the cancel event and the deadline
# Stream bounds. One event carries a few tokens (well under 1 KiB); a whole answer of
# `max_tokens` tokens a few KiB. Past these the server is broken or hostile.
MAX_LINE_BYTES = 64 * 1024
MAX_STREAM_BYTES = 4 * 1024 * 1024
MAX_ERROR_BYTES = 300  # of an HTTP error's body, kept for the message
MAX_CHARS_PER_TOKEN = 64  # text beyond this per asked-for token is not read
# A stream whose first token was late stays open this long for the same prompt asked again.
PARK_S = 30.0
# The settings a user changes when the engine is too slow for them (their wire names).
FIRST_TOKEN_SETTING = "firstTokenTimeoutMs"
BUDGET_SETTING = "timeBudgetMs"


class RemoteError(Exception):
    """Why a remote request failed, in one line; `status` is the HTTP status, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


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
    first_token_timeouts: int = 0  # no first token by the first-token bound
    continued: int = 0  # requests that took over a late stream for the same prompt
    time_budget: int = 0  # decoding stopped by the time budget
    consecutive_failures: int = 0
    last_error: str | None = None
    last_error_at: float | None = None  # time.time()
    backoff_until: float = 0.0  # time.monotonic()
    last_first_token_ms: float | None = None


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
        window_tokens: int = 4096,
        transport: httpx2.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`model` is what the server knows the model (or adapter) by; `stop_strings` end a
        completion on the server (and are enforced locally through the caller's predicate);
        `read_timeout` bounds a stalled stream when the caller gives no deadline;
        `window_tokens` is the most prompt tokens `window_for` allows; `clock` is
        `time.monotonic` but in tests (deadlines are on it)."""
        self.base_url = base_url.rstrip("/")
        self.url = completions_url(self.base_url)
        self.tokenizer = tokenizer
        self.model = model
        self.stop_strings = list(dict.fromkeys(s for s in stop_strings if s))
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.counts = RemoteCounts()
        self.pace = PrefillPace(ceiling=window_tokens)
        # Optional fields, each dropped once a server refuses it.
        self.cache_prompt = True
        self.logprobs = True
        self._parked: _Parked | None = None  # the last late stream, kept for a repeat
        self.clock = clock
        self._warned: set[str] = set()  # the settings already named in a "too slow" line
        headers = {"Accept": "text/event-stream"}
        key = api_key if api_key is not None else api_key_from_env()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx2.Timeout(read_timeout, connect=connect_timeout)
        # TLS certificates are verified (the client's default); never turned off here.
        self._client = httpx2.Client(headers=headers, timeout=timeout, transport=transport)
        self._lock = threading.Lock()  # one request at a time
        self._pace_lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._settle(self._parked)
            self._parked = None
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

    def window_for(self, first_token_s: float | None) -> int:
        """The most prompt tokens this engine prefills within `first_token_s` (None: no
        bound), as learned from its earlier first tokens; between a floor and the window."""
        with self._pace_lock:
            return self.pace.window_for(first_token_s)

    def status(self) -> dict[str, Any]:
        c = self.counts
        left = max(0.0, c.backoff_until - self.clock())
        with self._pace_lock:
            fit = self.pace.fit()
        return {
            "url": self.base_url,
            "model": self.model,
            "requests": c.requests,
            "ok": c.ok,
            "errors": c.errors,
            "skipped": c.skipped,
            "cancelled": c.cancelled,
            "firstTokenTimeouts": c.first_token_timeouts,
            "continued": c.continued,
            "timeBudget": c.time_budget,
            "consecutiveFailures": c.consecutive_failures,
            "lastError": c.last_error,
            "lastErrorAt": c.last_error_at,
            "backoffSeconds": round(left, 2),
            "lastFirstTokenMs": c.last_first_token_ms,
            # The learned pace: a fixed cost per request plus a cost per prompt token.
            "prefillOverheadMs": None if fit is None else round(fit[0] * 1000, 1),
            "prefillTokensPerSecond": None if fit is None else round(1 / fit[1], 1),
            "windowTokens": self.pace.window,
            "cachePrompt": self.cache_prompt,
            "logprobs": self.logprobs,
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
        draft_tokens: int | None = None,
    ) -> Generation:
        """Continue `prompt` on the server; the same contract as `Engine.generate`.

        The first token is due by `prefill_deadline` (else stop reason
        "first_token"); `deadline` bounds decoding, moved back by the time the
        first token took (stop reason "time"). `first_allowed` cannot be
        enforced over this API, so the remote Completer is built without token
        healing and this argument is ignored; so are `hint` and `draft_tokens` (drafting
        is the server's business).
        """
        if not prompt:
            raise ValueError("the prompt must hold at least one token")
        started = self.clock()
        with self._lock:
            self.counts.requests += 1
            if max_new_tokens <= 0:
                return self._generation([], "max_tokens", prompt, started, None)
            if cancel is not None and cancel.is_set():
                self.counts.cancelled += 1
                return self._generation([], "cancelled", prompt, started, None)
            if started < self.counts.backoff_until:
                self.counts.skipped += 1
                return self._generation([], "error", prompt, started, None)
            limits = _Limits(started, deadline, prefill_deadline, cancel)
            try:
                got, sent = self._request(prompt, max_new_tokens, stop, limits)
            except RemoteError as exc:
                self._failed(str(exc))
                return self._generation([], "error", prompt, started, None)
            self.counts.consecutive_failures = 0
            self.counts.ok += 1
            self._learn(len(prompt), got.reason, limits, got.first, sent)
            scores = aligned_logprobs(self.tokenizer, got.tokens, got.pieces)
            return self._generation(got.tokens, got.reason, prompt, started, got.first, scores)

    def _request(
        self,
        prompt: Sequence[int],
        max_new_tokens: int,
        stop: StopPredicate | None,
        limits: _Limits,
    ) -> tuple[_Streamed, float]:
        """One streamed request (the late stream of the same request, if one is parked);
        again without an optional field (`cache_prompt`, `logprobs`) that the server
        refuses. Returns what `_stream` does and when the stream's request was sent."""
        body = self._body(prompt, max_new_tokens)
        reader: _Reader | None = self._adopt(body)
        while True:
            try:
                return self._read(reader or self._open(body), body, max_new_tokens, stop, limits)
            except RemoteError as exc:
                refused = [f for f in _OPTIONAL if f in body and f in str(exc)]
                if exc.status not in (400, 422) or not refused:
                    raise
                for name in refused:
                    setattr(self, name, False)
                    log.info(
                        "remote engine %s does not take %s; not sent again", self.base_url, name
                    )
                body, reader = self._body(prompt, max_new_tokens), None

    def _open(self, body: dict[str, Any]) -> _Reader:
        return _Reader(self._client, self.url, body, self.clock)

    def _read(
        self,
        reader: _Reader,
        body: dict[str, Any],
        max_new_tokens: int,
        stop: StopPredicate | None,
        limits: _Limits,
    ) -> tuple[_Streamed, float]:
        """Read `reader` to an end; a stream whose first token is late is parked, not closed:
        the engine's prefill goes on, and a repeat of the request continues it."""
        try:
            got = self._stream(reader, max_new_tokens, stop, limits)
        except BaseException:
            reader.close()
            raise
        if got.reason == "first_token" and limits.first_token is not None:
            self._park(_Parked(body, reader, limits.first_token - limits.started))
        else:
            reader.close()
        return got, reader.sent_at

    def _park(self, parked: _Parked) -> None:
        self._settle(self._parked)
        parked.timer = threading.Timer(PARK_S, parked.reader.close)
        parked.timer.daemon = True
        parked.timer.start()
        self._parked = parked

    def _adopt(self, body: dict[str, Any]) -> _Reader | None:
        """The parked stream, if it was asked for with this very body; any other is closed."""
        parked, self._parked = self._parked, None
        if parked is None:
            return None
        if parked.body == body and not parked.reader.closed:
            if parked.timer is not None:
                parked.timer.cancel()
            self.counts.continued += 1
            return parked.reader
        self._settle(parked)
        return None

    def _settle(self, parked: _Parked | None) -> None:
        """Close a parked stream and learn from it: when its first text came, if it did."""
        if parked is None:
            return
        if parked.timer is not None:
            parked.timer.cancel()
        parked.reader.close()
        tokens = len(self.tokenizer.encode(parked.body["prompt"], add_special_tokens=False))
        with self._pace_lock:
            if parked.reader.first_data_at is not None:
                self.pace.observed(tokens, parked.reader.first_data_at - parked.reader.sent_at)
            else:
                self.pace.timed_out(tokens, parked.bound)

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
        if self.cache_prompt:
            body["cache_prompt"] = True
        if self.logprobs:
            body["logprobs"] = 1  # the chosen token's, and the best alternative's
        return body

    def _learn(
        self,
        prompt_tokens: int,
        reason: StopReason,
        limits: _Limits,
        first: float | None,
        sent: float,
    ) -> None:
        """Count the reason, learn the prefill pace (from when the stream's request was
        sent: a continued one's first try), and say once when the engine is too slow.
        A late first token teaches when its parked stream is settled (see `_settle`)."""
        c = self.counts
        c.cancelled += reason == "cancelled"
        c.time_budget += reason == "time"
        if first is not None:
            c.last_first_token_ms = round((first - sent) * 1000, 1)
            with self._pace_lock:
                self.pace.observed(prompt_tokens, first - sent)
        if reason == "first_token" and limits.first_token is not None:
            c.first_token_timeouts += 1
            bound = limits.first_token - limits.started
            self._too_slow(
                FIRST_TOKEN_SETTING,
                f"no first token within {bound * 1000:.0f} ms for a {prompt_tokens}-token "
                f"prompt; the prompt window shrinks to fit, down to {self.pace.floor} tokens",
            )
        elif reason == "time" and first is None:
            self._too_slow(BUDGET_SETTING, "the time budget ran out before any text")

    def _too_slow(self, setting: str, detail: str) -> None:
        if setting in self._warned:
            return
        self._warned.add(setting)
        log.warning(
            "remote engine %s is too slow for the settings: %s; if answers stay empty, "
            "raise the setting %s",
            self.base_url,
            detail,
            setting,
        )

    def _failed(self, message: str) -> None:
        c = self.counts
        c.errors += 1
        c.consecutive_failures += 1
        c.last_error, c.last_error_at = message, time.time()
        wait = min(self.backoff_base * 2 ** (c.consecutive_failures - 1), self.backoff_max)
        c.backoff_until = self.clock() + wait
        log.warning("remote engine %s: %s; retrying in %.1f s", self.base_url, message, wait)

    def _stream(
        self,
        reader: _Reader,
        max_new_tokens: int,
        stop: StopPredicate | None,
        limits: _Limits,
    ) -> _Streamed:
        """The tokens, why they ended, when the first text arrived and the server's scored
        tokens; raises RemoteError."""
        text = ""
        got = _Streamed()
        # A server that ignores max_tokens must not stream forever, nor send a novel.
        ceiling = 4 * max_new_tokens + 16
        most_chars = MAX_CHARS_PER_TOKEN * ceiling
        for chunk in reader.chunks(limits, self.clock):
            if isinstance(chunk, _End):
                got.reason = chunk.reason
                return got
            if not chunk.text:
                continue
            if got.first is None:
                got.first = self.clock()
                limits.first_arrived(got.first)
            text = (text + chunk.text)[:most_chars]
            if len(got.pieces) < ceiling:
                got.pieces.extend(chunk.scored)
            ids = self.tokenizer.encode(text, add_special_tokens=False)[:ceiling]
            fired = _first_stop(ids, got.tokens, stop)
            if fired is not None:
                got.tokens, got.reason = ids[:fired], "stop"
                return got
            got.tokens = ids
            if len(ids) >= ceiling or len(text) >= most_chars:
                got.reason = "max_tokens"
                return got
        raise RemoteError("the stream ended without a finish reason")

    def _generation(
        self,
        tokens: list[int],
        reason: StopReason,
        prompt: Sequence[int],
        started: float,
        first: float | None,
        logprobs: tuple[float, ...] = (),
    ) -> Generation:
        now = self.clock()
        first = first or now
        return Generation(
            tokens=list(tokens),
            stop_reason=reason,
            prompt_tokens=len(prompt),
            cached_tokens=0,
            prefill_ms=(first - started) * 1000,
            decode_ms=(now - first) * 1000,
            logprobs=logprobs,
        )


def aligned_logprobs(
    tokenizer: Any, tokens: Sequence[int], pieces: Sequence[tuple[str, float]]
) -> tuple[float, ...]:
    """The server's log-probabilities for `tokens` (the local re-encoding of its text) where
    its first `len(tokens)` tokens spell the same text, one for one; () otherwise (another
    tokenizer, a token split across pieces, no logprobs sent)."""
    n = len(tokens)
    if not n or len(pieces) < n:
        return ()
    if "".join(text for text, _ in pieces[:n]) != tokenizer.decode(list(tokens)):
        return ()
    return tuple(logprob for _, logprob in pieces[:n])


@dataclass
class _Limits:
    """When one request must end: the first token by `first_token`, the rest `budget`
    seconds after it (both None: no bound), or at `cancel`."""

    started: float
    deadline: float | None
    first_token: float | None
    cancel: threading.Event | None

    def first_arrived(self, at: float) -> None:
        """Decoding gets its whole budget from the first token on."""
        if self.deadline is not None:
            self.deadline += at - self.started
        self.first_token = None

    def reached(self, now: float, first_seen: bool) -> StopReason | None:
        if self.cancel is not None and self.cancel.is_set():
            return "cancelled"
        if not first_seen and self.first_token is not None and now >= self.first_token:
            return "first_token"
        if first_seen and self.deadline is not None and now >= self.deadline:
            return "time"
        return None


@dataclass
class _Parked:
    """A stream whose first token was late: kept open for a repeat of its request."""

    body: dict[str, Any]
    reader: _Reader
    bound: float  # the first-token bound it missed, in seconds
    timer: threading.Timer | None = None  # closes it after PARK_S


def _first_stop(ids: list[int], checked: list[int], stop: StopPredicate | None) -> int | None:
    """The shortest prefix length of `ids` at which `stop` fires, skipping prefixes of `checked`
    (already seen not to fire)."""
    if stop is None:
        return None
    for n in range(common_prefix_length(checked, ids) + 1, len(ids) + 1):
        if stop(ids[:n]):
            return n
    return None


@dataclass(frozen=True)
class _End:
    reason: StopReason


@dataclass(frozen=True)
class _Piece:
    """One event's text, and the server's tokens in it with their log-probabilities."""

    text: str
    scored: list[tuple[str, float]]


@dataclass
class _Streamed:
    """What one stream gave: tokens, why it ended, when its first text came, and the
    server's own tokens with their log-probabilities (when it sent them)."""

    tokens: list[int] = field(default_factory=list)
    reason: StopReason = "error"
    first: float | None = None
    pieces: list[tuple[str, float]] = field(default_factory=list)


# Request fields a server may refuse (a 400 or 422 naming them); each is then dropped.
_OPTIONAL = ("cache_prompt", "logprobs")


FINISH_REASONS: dict[str, StopReason] = {"length": "max_tokens", "stop": "stop", "eos": "eos"}


def bounded_lines(
    pieces: Iterable[bytes], max_line: int = MAX_LINE_BYTES, max_total: int = MAX_STREAM_BYTES
) -> Iterator[str]:
    """The lines of a byte stream, without their ends; RemoteError past a bound (a line
    longer than `max_line` bytes, or more than `max_total` bytes in all)."""
    buffer = b""
    total = 0
    for piece in pieces:
        total += len(piece)
        if total > max_total:
            raise RemoteError(f"malformed stream: more than {max_total} bytes")
        buffer += piece
        *lines, buffer = buffer.split(b"\n")
        for line in [*lines, buffer]:
            if len(line) > max_line:
                raise RemoteError(f"malformed stream: a line longer than {max_line} bytes")
        for line in lines:
            yield line.rstrip(b"\r").decode("utf-8", "replace")
    if buffer:
        yield buffer.rstrip(b"\r").decode("utf-8", "replace")


class _Reader:
    """One streamed request on a daemon thread, handed over as a queue of events.

    The thread sends the request and puts each line of the body on the queue
    (bounded: see `bounded_lines`); `chunks` turns those into text pieces and an
    `_End`, checking the cancel event and the deadlines between them. `close`
    shuts the socket down, which wakes the thread's blocked read and tells the
    server the client has gone.
    """

    def __init__(
        self,
        client: httpx2.Client,
        url: str,
        body: dict[str, Any],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._events: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._clock = clock
        self.sent_at = clock()
        self.first_data_at: float | None = None  # when the first `data:` line came
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
                    detail = _head(response.iter_bytes(), MAX_ERROR_BYTES)
                    message = f"HTTP {response.status_code}: {detail.strip()}"
                    self._events.put(("error", RemoteError(message, response.status_code)))
                    return
                for line in bounded_lines(response.iter_bytes()):
                    if self._closed.is_set():
                        return
                    if self.first_data_at is None and line.startswith("data:"):
                        self.first_data_at = self._clock()
                    self._events.put(("line", line))
                self._events.put(("eof", None))
        except Exception as exc:  # noqa: BLE001 - every failure becomes one event
            if not self._closed.is_set():
                error = exc if isinstance(exc, RemoteError) else RemoteError(_describe(exc))
                self._events.put(("error", error))

    def chunks(self, limits: _Limits, clock: Callable[[], float]) -> Iterator[_Piece | _End]:
        """Text pieces as they arrive, then one `_End`; raises RemoteError on a failure."""
        first_seen = False
        while True:
            reason = limits.reached(clock(), first_seen)
            if reason is not None:
                yield _End(reason)
                return
            try:
                kind, value = self._events.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if kind == "error":
                raise value
            if kind == "eof":
                return
            parsed = parse_sse_event(value)
            if parsed is None:
                continue
            text, finish, scored = parsed
            if text:
                first_seen = True
                yield _Piece(text, scored)
            if finish is not None:
                yield _End(finish)
                return

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

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


def _head(pieces: Iterable[bytes], size: int) -> str:
    """The first `size` bytes of a body, read no further."""
    kept = b""
    for piece in pieces:
        kept += piece
        if len(kept) >= size:
            break
    return kept[:size].decode("utf-8", "replace")


def parse_sse_line(line: str) -> tuple[str, StopReason | None] | None:
    """One line of an SSE completions stream: (text, finish reason or None), or None when the
    line carries nothing to use. Raises RemoteError for an error event or a malformed body.
    """
    parsed = parse_sse_event(line)
    return None if parsed is None else (parsed[0], parsed[1])


def parse_sse_event(
    line: str,
) -> tuple[str, StopReason | None, list[tuple[str, float]]] | None:
    """`parse_sse_line`'s (text, finish reason) and the event's tokens with their
    log-probabilities (`sse_logprobs`)."""
    line = line.strip()
    if not line or line.startswith(":") or not line.startswith("data:"):
        return None  # blank separators, comments, `event:` and `id:` fields
    data = line[len("data:") :].strip()
    if data == "[DONE]":
        return "", "stop", []
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise RemoteError(f"malformed stream: {data[:120]!r}") from None
    if not isinstance(chunk, dict):
        raise RemoteError(f"malformed stream: {data[:120]!r}")
    if "error" in chunk:
        error = chunk["error"]
        message = error.get("message", error) if isinstance(error, dict) else error
        raise RemoteError(f"the server reported: {_short(message)}")
    choices = chunk.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if "usage" in chunk:  # a usage-only chunk (stream_options)
            return None
        raise RemoteError(f"malformed stream: no choices in {data[:120]!r}")
    text = choices[0].get("text") or ""
    if not isinstance(text, str):
        raise RemoteError("malformed stream: choices[0].text is not a string")
    finish = choices[0].get("finish_reason")
    if finish is not None and not isinstance(finish, str):
        raise RemoteError("malformed stream: choices[0].finish_reason is not a string")
    # The last piece of text may ride on the finishing chunk.
    reason = FINISH_REASONS.get(finish, "stop") if finish else None
    return text, reason, sse_logprobs(choices[0])


def sse_logprobs(choice: dict[str, Any]) -> list[tuple[str, float]]:
    """The (token text, log-probability) pairs of one streamed choice: the OpenAI completions
    shape (`logprobs.tokens` + `token_logprobs`, vLLM's), or the chat shape
    (`logprobs.content[].token/logprob`, llama-server's); [] when absent or malformed."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        return []
    pairs: list[tuple[Any, Any]]
    if isinstance(logprobs.get("content"), list):
        entries = logprobs["content"]
        pairs = [
            (e.get("token"), e.get("logprob")) if isinstance(e, dict) else (0, 0) for e in entries
        ]
    else:
        tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
        if (
            not isinstance(tokens, list)
            or not isinstance(values, list)
            or len(tokens) != len(values)
        ):
            return []
        pairs = list(zip(tokens, values, strict=True))
    valid = [
        (t, float(v))
        for t, v in pairs
        if isinstance(t, str) and isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return valid if len(valid) == len(pairs) else []


def _short(value: Any) -> str:
    """A server's error message in at most 200 characters, whatever its shape."""
    if isinstance(value, str):
        return value[:200]
    try:
        return json.dumps(value)[:200]
    except (TypeError, ValueError, RecursionError):
        return f"an unreadable {type(value).__name__}"


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
