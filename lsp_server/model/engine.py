"""Greedy generation over token ids, reusing the KV cache of recent prompts.

Prefill is the cost of a completion on a CPU (~250 tokens/s for SmolLM2-135M
against ~10 decoded tokens/s), and consecutive prompts mostly share a prefix:
the user typed a few characters, or asked again at the same place. The engine
therefore keeps the KV caches of its last few sequences and, for a new prompt,
continues the one with the longest common token prefix, prefilling only the
rest. The result is the same as generating from scratch.

The engine knows nothing of LSP, text or torch: a `Backend` runs the model.
Tests use a fake backend with fixed logits; `lsp_server.model.backend` wraps a
transformers model.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

StopReason = Literal["max_tokens", "eos", "stop", "time", "cancelled", "error"]
# Called with the tokens generated so far; True ends generation after the last one.
StopPredicate = Callable[[Sequence[int]], bool]


class Backend(Protocol):
    """Runs a causal language model one chunk of tokens at a time."""

    eos_token_ids: frozenset[int]

    def new_cache(self) -> Any:
        """An empty KV cache."""

    def forward(
        self, cache: Any, token_ids: Sequence[int], allowed: Sequence[int] | None = None
    ) -> int:
        """Append `token_ids` to `cache` and return the greedy next token after them,
        chosen among `allowed` when given."""

    def crop(self, cache: Any, length: int) -> None:
        """Keep only the first `length` positions of `cache`."""


@dataclass(frozen=True)
class Generation:
    """What one call to `Engine.generate` produced, with the counts the CLI and server report."""

    tokens: list[int]
    stop_reason: StopReason
    prompt_tokens: int
    cached_tokens: int
    prefill_ms: float
    decode_ms: float

    @property
    def generated_tokens(self) -> int:
        return len(self.tokens)

    @property
    def latency_ms(self) -> float:
        return self.prefill_ms + self.decode_ms


@dataclass
class _Entry:
    tokens: list[int]  # the positions whose keys and values `cache` holds
    cache: Any


class PrefixCache:
    """The KV caches of recent sequences, bounded in count and in total tokens.

    `take` hands an entry out (cropped to the shared prefix) and `put` takes it
    back: an entry is owned by one generation at a time and never copied.
    """

    def __init__(self, max_entries: int = 4, max_tokens: int = 16_384) -> None:
        self.max_entries = max_entries
        self.max_tokens = max_tokens
        self._entries: list[_Entry] = []  # least recently used first
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def total_tokens(self) -> int:
        return sum(len(e.tokens) for e in self._entries)

    def take(self, prompt: Sequence[int], backend: Backend) -> tuple[Any, int]:
        """A cache holding the longest reusable prefix of `prompt`, and that prefix's length.

        At least one prompt token is always left to prefill, since its logits
        give the first new token.
        """
        best, best_len = None, 0
        for entry in self._entries:
            shared = common_prefix_length(entry.tokens, prompt)
            if shared > best_len:
                best, best_len = entry, shared
        reuse = min(best_len, len(prompt) - 1)
        if best is None or reuse <= 0:
            self.misses += 1
            return backend.new_cache(), 0
        self._entries.remove(best)
        if reuse < len(best.tokens):
            backend.crop(best.cache, reuse)
        self.hits += 1
        return best.cache, reuse

    def put(self, tokens: list[int], cache: Any) -> None:
        if not tokens:
            return
        self._entries.append(_Entry(tokens, cache))
        while len(self._entries) > self.max_entries or (
            len(self._entries) > 1 and self.total_tokens > self.max_tokens
        ):
            self._entries.pop(0)

    def clear(self) -> None:
        self._entries.clear()

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "tokens": self.total_tokens,
            "hits": self.hits,
            "misses": self.misses,
        }


def common_prefix_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine:
    """Greedy decoding with KV prefix reuse, stop conditions, a time budget and cancellation.

    One generation runs at a time (the model is not re-entrant); callers on
    other threads wait on an internal lock.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        cache: PrefixCache | None = None,
        prefill_chunk: int = 256,
        reuse: bool = True,
    ) -> None:
        self.backend = backend
        self.cache = cache if cache is not None else PrefixCache()
        # Long prompts are prefilled in chunks so cancellation and the time
        # budget are noticed within one chunk, not after the whole prompt.
        self.prefill_chunk = prefill_chunk
        self.reuse = reuse
        self._lock = threading.Lock()

    def generate(
        self,
        prompt: Sequence[int],
        *,
        max_new_tokens: int = 64,
        stop: StopPredicate | None = None,
        deadline: float | None = None,
        cancel: threading.Event | None = None,
        first_allowed: Sequence[int] | None = None,
    ) -> Generation:
        """Greedily continue `prompt`.

        Stops at `max_new_tokens`, an end-of-sequence token (not included in
        the result), when `stop(tokens)` is true (its last token included),
        when `time.monotonic()` passes `deadline`, or when `cancel` is set;
        the last two are checked before every model call. `first_allowed`
        restricts the first generated token (token healing: the prompt's last,
        partial token is removed and regenerated among the tokens extending it).
        """
        if not prompt:
            raise ValueError("the prompt must hold at least one token")
        prompt = list(prompt)
        with self._lock:
            started = time.monotonic()
            if self.reuse:
                kv, cached = self.cache.take(prompt, self.backend)
            else:
                kv, cached = self.backend.new_cache(), 0
            fed = prompt[:cached]  # tokens whose keys and values `kv` holds
            out: list[int] = []
            reason: StopReason | None = None if max_new_tokens > 0 else "max_tokens"
            next_token = -1
            prefill_ms = 0.0
            try:
                while len(fed) < len(prompt):
                    reason = _interrupted(deadline, cancel)
                    if reason:
                        break
                    chunk = prompt[len(fed) : len(fed) + self.prefill_chunk]
                    last = len(fed) + len(chunk) == len(prompt)
                    next_token = self.backend.forward(kv, chunk, first_allowed if last else None)
                    fed.extend(chunk)
                prefill_done = time.monotonic()
                prefill_ms = (prefill_done - started) * 1000
                while reason is None:
                    if next_token in self.backend.eos_token_ids:
                        reason = "eos"
                        break
                    out.append(next_token)
                    if stop is not None and stop(out):
                        reason = "stop"
                    elif len(out) >= max_new_tokens:
                        reason = "max_tokens"
                    else:
                        reason = _interrupted(deadline, cancel)
                    if reason:
                        break
                    next_token = self.backend.forward(kv, [next_token])
                    fed.append(out[-1])
            except BaseException:
                kv = None  # a half-updated cache cannot be trusted
                raise
            finally:
                if kv is not None and self.reuse:
                    self.cache.put(fed, kv)
            decode_ms = (time.monotonic() - started) * 1000 - prefill_ms
            return Generation(
                tokens=out,
                stop_reason=reason or "max_tokens",
                prompt_tokens=len(prompt),
                cached_tokens=cached,
                prefill_ms=prefill_ms,
                decode_ms=max(decode_ms, 0.0),
            )

    def prefill(
        self,
        prompt: Sequence[int],
        cancel: threading.Event | None = None,
        *,
        chunk: int | None = None,
    ) -> int:
        """Feed `prompt` into the prefix cache without generating; returns the tokens computed.

        Warming: a later `generate` whose prompt starts with these ids finds
        them cached. Stops between chunks (of `chunk` tokens, default the
        engine's) once `cancel` is set, keeping what it computed, so a real
        request waits at most one chunk and then continues it.
        """
        prompt = list(prompt)
        if not prompt or not self.reuse:
            return 0
        with self._lock:
            kv, cached = self.cache.take(prompt, self.backend)
            fed = prompt[:cached]
            try:
                while len(fed) < len(prompt) and not (cancel is not None and cancel.is_set()):
                    piece = prompt[len(fed) : len(fed) + (chunk or self.prefill_chunk)]
                    self.backend.forward(kv, piece)
                    fed.extend(piece)
            except BaseException:
                kv = None  # a half-updated cache cannot be trusted
                raise
            finally:
                if kv is not None:
                    self.cache.put(fed, kv)
            return len(fed) - cached


def _interrupted(deadline: float | None, cancel: threading.Event | None) -> StopReason | None:
    if cancel is not None and cancel.is_set():
        return "cancelled"
    if deadline is not None and time.monotonic() >= deadline:
        return "time"
    return None
