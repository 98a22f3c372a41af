"""Greedy generation over token ids, reusing the KV cache of recent prompts.

Prefill is the cost of a completion on a CPU (~250 tokens/s for SmolLM2-135M
against ~10 decoded tokens/s), and consecutive prompts mostly share a prefix:
the user typed a few characters, or asked again at the same place. The engine
therefore keeps the KV caches of its last few sequences and, for a new prompt,
continues the one with the longest common token prefix, prefilling only the
rest. The result is the same as generating from scratch.

Decoding costs ~37 ms per token for SmolLM2-135M on this CPU (quiet), and one
forward over nine tokens costs 1.25 (bf16) to 2 (fp32) times a forward over
one. Completions often
repeat text that is already in the prompt or in the suggestion shown a moment
ago, so the engine drafts the tokens that followed the last few generated ones
there or in its own recent generations (`NgramDrafter`), also right after the
prompt's last chunk, has the model verify them in one forward, keeps the
longest prefix the model agrees with plus the model's own next token, and
crops the KV cache back past the first rejected draft. The output is exactly
plain greedy decoding's; only the number of forwards changes.

Each generated token comes with the model's confidence in it (`Generation.logprobs`
and `.entropies`): the backend scores the positions whose next token it chooses,
and a verified draft keeps the scores of the positions it keeps, which are the
ones plain decoding would have computed.

The time budget bounds decoding, not prefill: a prompt's prefill is kept for
the next request, so stopping it at the deadline would only leave the answer
empty. `deadline` therefore moves back by the time prefill took, and
`prefill_deadline` (optional) gives up on a hopeless prefill, keeping what it
did in the cache for the next request to continue.

The engine knows nothing of LSP, text or torch: a `Backend` runs the model.
Tests use a fake backend with fixed logits; `lsp_server.model.backend` wraps a
transformers model.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# The engine's result and stop rules are the completer's types (pure, in completion/).
from lsp_server.completion.generation import Generation, StopPredicate, StopReason

# The most tokens drafted per forward, by default. A forward over 1 + 8 tokens
# costs ~1.25x a one-token step in bf16 on this CPU, ~2x in fp32 (docs/benchmarks.md).
DRAFT_TOKENS = 8
# The most tokens drafted after a forward whose drafts were all rejected. Over the typing
# replay's recorded completions with 4-bit weights (draft_replay, costs by width from
# `bench int4`), this took 0.3-2.6% off the decode time and 4-5% off the 95th
# percentile of a completion's, on the files it was chosen on and on three others.
SMALL_DRAFT_AFTER_MISS = 1
# Prompt tokens kept before each recent generation: the key that finds it again.
_PROMPT_TAIL = 16

# (log-probability, entropy in nats) of one chosen token: see `Generation.logprobs`.
Score = tuple[float, float]


class Backend(Protocol):
    """Runs a causal language model one chunk of tokens at a time."""

    eos_token_ids: frozenset[int]

    def new_cache(self) -> Any:
        """An empty KV cache."""

    def forward(
        self,
        cache: Any,
        token_ids: Sequence[int],
        allowed: Sequence[int] | None = None,
        *,
        scores: list[Score] | None = None,
    ) -> int:
        """Append `token_ids` to `cache` and return the greedy next token after them,
        chosen among `allowed` when given. With `scores`, append the returned token's
        `Score` to it (a backend that cannot tell appends nothing)."""

    def verify(
        self,
        cache: Any,
        token_ids: Sequence[int],
        *,
        keep: int | None = None,
        allowed: Sequence[int] | None = None,
        scores: list[Score] | None = None,
    ) -> list[int]:
        """Append `token_ids` to `cache` in one forward and return the greedy next token
        after each of the last `keep` of them (default: all), the first of these chosen
        among `allowed` when given. With `scores`, append the `Score` of each returned
        token, at least up to the first that differs from the token fed after it (the
        tokens after that one are discarded, so a backend may leave their scores out)."""

    def crop(self, cache: Any, length: int) -> None:
        """Keep only the first `length` positions of `cache`."""


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
        give the first new token. An entry that `prompt` would crop to less than
        it throws away (`worth_cropping`) stays for the prompts that share more
        of it, and `prompt` starts from a new cache.
        """
        best, best_len = None, 0
        for entry in self._entries:
            shared = common_prefix_length(entry.tokens, prompt)
            if shared > best_len:
                best, best_len = entry, shared
        reuse = min(best_len, len(prompt) - 1)
        if best is None or reuse <= 0 or not worth_cropping(reuse, len(best.tokens)):
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


# A cached sequence is cropped for a prompt that keeps at least as many of its tokens
# as it throws away, or throws away fewer than this many. A prompt that shares less
# with it, such as one whose window start moved (the next suggestion computed with the
# shown one inserted, a few tokens longer, may move it) or another file's, shares only
# what comes before the code (the header, the context snippets): cropping would throw
# away the window that the next request in the old place needs.
MIN_DISCARDED_TOKENS = 64


def worth_cropping(kept: int, length: int) -> bool:
    """Whether to crop a cached sequence of `length` tokens to its first `kept` for reuse."""
    discarded = length - kept
    return kept >= discarded or discarded < MIN_DISCARDED_TOKENS


def common_prefix_length(a: Sequence[object], b: Sequence[object]) -> int:
    """How many leading items `a` and `b` share (token ids, or a text's lines)."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class NgramDrafter:
    """Guesses the next tokens by finding the last few tokens earlier in the text.

    Looks up the longest suffix (at most `max_n` tokens) of the tokens so far,
    first in the hint (the suggestion shown last at this place, the model's own
    earlier output), then earlier in the tokens themselves, and drafts what
    followed its latest occurrence there. Lookups are dictionary hits: every
    n-gram is indexed once, by the position right after its latest occurrence.
    """

    def __init__(self, tokens: Sequence[int], *, hint: Sequence[int] = (), max_n: int = 4) -> None:
        self.max_n = max_n
        self.tokens: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}
        self.hint = list(hint)
        self._hint_index: dict[tuple[int, ...], int] = {}
        _index_all(self.hint, self._hint_index, max_n)
        self.extend(tokens)

    def extend(self, tokens: Sequence[int]) -> None:
        """Append tokens; the n-grams they complete become drafting sources."""
        for token in tokens:
            end = len(self.tokens)  # the n-grams ending just before `token` now have a follower
            for n in range(1, min(self.max_n, end) + 1):
                self._index[tuple(self.tokens[end - n : end])] = end
            self.tokens.append(token)

    def draft(self, limit: int) -> list[int]:
        """Up to `limit` tokens that may follow the tokens so far ([] when nothing matches)."""
        if limit <= 0 or not self.tokens:
            return []
        for n in range(min(self.max_n, len(self.tokens)), 0, -1):
            key = tuple(self.tokens[-n:])
            for source, index in ((self.hint, self._hint_index), (self.tokens, self._index)):
                start = index.get(key)
                if start is not None:
                    return source[start : start + limit]
        return []


def _index_all(tokens: Sequence[int], index: dict[tuple[int, ...], int], max_n: int) -> None:
    for end in range(1, len(tokens)):
        for n in range(1, min(max_n, end) + 1):
            index[tuple(tokens[end - n : end])] = end


@dataclass(frozen=True)
class _Ask:
    """What one `Engine.generate` call asks for (its keyword arguments)."""

    max_new_tokens: int
    stop: StopPredicate | None
    cancel: threading.Event | None
    first_allowed: Sequence[int] | None
    hint: Sequence[int]
    deadline: float | None
    prefill_deadline: float | None
    draft_tokens: int | None  # the most tokens drafted per forward (None: the engine's)


@dataclass
class _Run:
    """The state of one generation: what the KV cache holds and what came out."""

    fed: list[int]  # tokens whose keys and values the cache holds
    out: list[int]
    pending: list[int] = field(default_factory=list)  # chosen by the model, not yet emitted
    # The scores of `pending` and of `out`, aligned with them while the backend scores
    # every token ([] or shorter once it does not).
    pending_scores: list[Score] = field(default_factory=list)
    scores: list[Score] = field(default_factory=list)
    forwards: int = 0
    drafted: int = 0
    accepted: int = 0


class Engine:
    """Greedy decoding with KV prefix reuse, drafted tokens, stop conditions, a time budget
    and cancellation.

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
        draft_tokens: int | None = None,
        draft_ngram: int = 4,
        draft_history: int = 8,
    ) -> None:
        """`draft_tokens` is the most tokens drafted per forward (0: plain greedy
        decoding; None: the backend's `draft_tokens` where it has one, the cheapest
        verification width for its arithmetic, else `DRAFT_TOKENS`); `draft_ngram`
        the longest n-gram looked up to draft them; `draft_history` how many recent
        generations (each with the end of its prompt) are drafted from besides the
        prompt and the caller's hint."""
        self.backend = backend
        self.cache = cache if cache is not None else PrefixCache()
        # Long prompts are prefilled in chunks so cancellation and the time
        # budget are noticed within one chunk, not after the whole prompt.
        self.prefill_chunk = prefill_chunk
        self.reuse = reuse
        if draft_tokens is None:
            draft_tokens = int(getattr(backend, "draft_tokens", DRAFT_TOKENS))
        self.draft_tokens = draft_tokens
        self.draft_ngram = draft_ngram
        # The next request is most often at the same place after a few typed
        # characters, or an earlier place again: its output tends to repeat a
        # recent one, found by the prompt tail it followed.
        self._recent: deque[list[int]] = deque(maxlen=draft_history)
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
        hint: Sequence[int] = (),
        prefill_deadline: float | None = None,
        draft_tokens: int | None = None,
    ) -> Generation:
        """Greedily continue `prompt`.

        Stops at `max_new_tokens`, an end-of-sequence token (not in the result), when
        `stop(tokens)` holds (its last token included), when the decode budget runs out
        or when `cancel` is set (both checked before every model call). The budget ends at
        `deadline` (a `time.monotonic()` value) moved back by the prefill's time, so a slow
        prefill still yields its first tokens; a prefill still running at
        `prefill_deadline` stops there (reason "first_token"), and what it computed stays
        cached. `first_allowed` restricts the first generated token (token healing: the
        prompt's last, partial token is regenerated among the tokens extending it).
        `hint`, tokens likely to recur (the suggestion shown last here), is drafted from
        and never changes the output. `draft_tokens` (default the engine's; none where
        that is 0) is the most drafted per forward: more for a caller that mostly copies
        `hint` (a next edit's window rewrite).
        """
        if not prompt:
            raise ValueError("the prompt must hold at least one token")
        bounds = (deadline, prefill_deadline, draft_tokens)
        ask = _Ask(max_new_tokens, stop, cancel, first_allowed, hint, *bounds)
        prompt = list(prompt)
        with self._lock:
            started = time.monotonic()
            if self.reuse:
                kv, cached = self.cache.take(prompt, self.backend)
            else:
                kv, cached = self.backend.new_cache(), 0
            run = _Run(fed=prompt[:cached], out=[])
            try:
                reason, prefill_ms = self._continue(kv, run, prompt, ask, started)
            except BaseException:
                kv = None  # a half-updated cache cannot be trusted
                raise
            finally:
                if kv is not None and self.reuse:
                    self.cache.put(run.fed, kv)
                if run.out and self._recent.maxlen:
                    self._recent.append(prompt[-_PROMPT_TAIL:] + run.out)
            decode_ms = (time.monotonic() - started) * 1000 - prefill_ms
            return Generation(
                tokens=run.out,
                stop_reason=reason,
                prompt_tokens=len(prompt),
                cached_tokens=cached,
                prefill_ms=prefill_ms,
                decode_ms=max(decode_ms, 0.0),
                **_counts(run),
            )

    def _continue(
        self, kv: Any, run: _Run, prompt: list[int], ask: _Ask, started: float
    ) -> tuple[StopReason, float]:
        """Prefill what the cache lacks, then decode: (why it stopped, the prefill's ms)."""
        if ask.max_new_tokens <= 0:
            return "max_tokens", 0.0
        recent = [t for tokens in self._recent for t in tokens]
        # The caller's hint last: on equal keys the latest occurrence is drafted.
        drafter = NgramDrafter(prompt, hint=[*recent, *ask.hint], max_n=self.draft_ngram)
        drafts = self.draft_tokens  # an engine built not to draft never does
        if ask.draft_tokens is not None and drafts:
            drafts = ask.draft_tokens
        first = (ask.max_new_tokens, ask.first_allowed, drafts)
        reason = self._prefill(kv, run, prompt, drafter, first, ask.prefill_deadline, ask.cancel)
        prefill_ms = (time.monotonic() - started) * 1000
        if reason is not None:
            return reason, prefill_ms
        deadline = ask.deadline
        if deadline is not None:
            deadline += prefill_ms / 1000  # the budget bounds decoding only
        limits = (ask.max_new_tokens, ask.stop, deadline, ask.cancel, drafts)
        return self._decode(kv, run, drafter, limits), prefill_ms

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

    def _prefill(
        self,
        kv: Any,
        run: _Run,
        prompt: list[int],
        drafter: NgramDrafter,
        first: tuple[int, Sequence[int] | None, int],
        deadline: float | None,
        cancel: threading.Event | None,
    ) -> StopReason | None:
        """Feed the rest of `prompt` in chunks; set `run.pending` when it is all in.

        The last chunk goes in with drafted tokens after it (what followed the
        prompt's last tokens elsewhere): the forward that yields the first
        token can verify the next ones too.
        """
        max_new_tokens, first_allowed, draft_tokens = first
        while len(run.fed) < len(prompt):
            reason = _interrupted(deadline, cancel)
            if reason:
                return "first_token" if reason == "time" else reason
            chunk = prompt[len(run.fed) : len(run.fed) + self.prefill_chunk]
            if len(run.fed) + len(chunk) < len(prompt):
                self.backend.forward(kv, chunk)
                run.fed.extend(chunk)
                continue
            drafts = drafter.draft(min(draft_tokens, max_new_tokens - 1))
            if drafts:
                run.pending, run.pending_scores = self._verify(
                    kv, run, chunk, drafts, first_allowed
                )
            else:
                run.pending_scores = []
                token = self.backend.forward(kv, chunk, first_allowed, scores=run.pending_scores)
                run.pending = [token]
                run.fed.extend(chunk)
        run.forwards = 1
        return None

    def _decode(
        self,
        kv: Any,
        run: _Run,
        drafter: NgramDrafter,
        limits: tuple[int, StopPredicate | None, float | None, threading.Event | None, int],
    ) -> StopReason:
        """Emit `run.pending` and continue, verifying drafted tokens where there are any."""
        max_new_tokens, stop, deadline, cancel, draft_tokens = limits
        pending, scores = run.pending, run.pending_scores
        # Whether the last drafts were rejected from their first token: the next ones
        # mostly are too, so the next forward drafts one token only, until one is taken
        # (SMALL_DRAFT_AFTER_MISS; docs/benchmarks.md).
        missed = False
        while True:
            for i, token in enumerate(pending):
                if token in self.backend.eos_token_ids:
                    return "eos"
                run.out.append(token)
                if i < len(scores):
                    run.scores.append(scores[i])
                drafter.extend([token])
                if stop is not None and stop(run.out):
                    return "stop"
                if len(run.out) >= max_new_tokens:
                    return "max_tokens"
            reason = _interrupted(deadline, cancel)
            if reason:
                return reason
            # Drafting past the token budget would be wasted: the last emitted
            # token needs no forward after it.
            limit = min(draft_tokens, max_new_tokens - len(run.out) - 1)
            drafts = drafter.draft(min(limit, SMALL_DRAFT_AFTER_MISS) if missed else limit)
            pending, scores = self._step(kv, run, drafts)
            if drafts:
                missed = pending[0] != drafts[0]

    def _step(self, kv: Any, run: _Run, drafts: list[int]) -> tuple[list[int], list[Score]]:
        """One forward after the last emitted token; the tokens it settles, in order, and
        their scores."""
        last = run.out[-1]
        run.forwards += 1
        if not drafts:
            scores: list[Score] = []
            token = self.backend.forward(kv, [last], scores=scores)
            run.fed.append(last)
            return [token], scores
        return self._verify(kv, run, [last], drafts, None)

    def _verify(
        self,
        kv: Any,
        run: _Run,
        fed: list[int],
        drafts: list[int],
        allowed: Sequence[int] | None,
    ) -> tuple[list[int], list[Score]]:
        """Feed `fed` (whose last token needs its next) and `drafts` in one forward; keep
        the drafts the model agrees with and return the tokens the forward settles, and
        their scores (those of the positions plain decoding would have computed)."""
        scores: list[Score] = []
        chosen = self.backend.verify(
            kv, [*fed, *drafts], keep=len(drafts) + 1, allowed=allowed, scores=scores
        )
        agreed = 0
        while agreed < len(drafts) and drafts[agreed] == chosen[agreed]:
            agreed += 1
        # Keep the drafts the model agreed with; positions after them were
        # computed from a rejected token and go.
        run.fed.extend([*fed, *drafts[:agreed]])
        if agreed < len(drafts):
            self.backend.crop(kv, len(run.fed))
        run.drafted += len(drafts)
        run.accepted += agreed
        return chosen[: agreed + 1], scores[: agreed + 1] if len(scores) > agreed else []


def _counts(run: _Run) -> dict[str, Any]:
    """`Generation`'s counts of `run`, and its logprobs and entropies: one per generated
    token, or none at all."""
    scored = len(run.scores) == len(run.out)
    return {
        "forwards": run.forwards,
        "drafted": run.drafted,
        "accepted": run.accepted,
        "logprobs": tuple(s[0] for s in run.scores) if scored else (),
        "entropies": tuple(s[1] for s in run.scores) if scored else (),
    }


def _interrupted(deadline: float | None, cancel: threading.Event | None) -> StopReason | None:
    if cancel is not None and cancel.is_set():
        return "cancelled"
    if deadline is not None and time.monotonic() >= deadline:
        return "time"
    return None
