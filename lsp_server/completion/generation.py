"""What the completer asks of an engine, and what it gets back.

The completer continues token ids through an engine: `Engine` over a local
model (lsp_server.model.engine), or a remote server's client
(lsp_server.model.remote). Both implement `GenerationEngine` and return a
`Generation`; the types live here, in the pure text pipeline, so that
`completion` never imports `model` (the model side imports them from here).

Pure: no pygls, no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

# "time": the decoding budget ran out; "first_token": the prefill outran its own bound.
StopReason = Literal["max_tokens", "eos", "stop", "time", "first_token", "cancelled", "error"]
# Called with the tokens generated so far; True ends generation after the last one.
StopPredicate = Callable[[Sequence[int]], bool]


@dataclass(frozen=True)
class Generation:
    """What one call to `Engine.generate` produced, with the counts the CLI and server report."""

    tokens: list[int]
    stop_reason: StopReason
    prompt_tokens: int
    cached_tokens: int
    prefill_ms: float
    decode_ms: float
    # Model calls that yielded generated tokens: the prefill's last and every decode step.
    forwards: int = 0
    drafted: int = 0  # drafted tokens sent for verification
    accepted: int = 0  # of those, the ones the model agreed with
    # The model's confidence in each generated token, aligned with `tokens` (both () when
    # the engine cannot tell): the natural-log probability it gave the token, and the
    # entropy (nats) of its next-token distribution where the token was chosen. Greedy
    # decoding picks the most probable token, so a low log-probability means a flat,
    # unsure distribution; token healing's restricted first token is scored against the
    # full distribution all the same.
    logprobs: tuple[float, ...] = ()
    entropies: tuple[float, ...] = ()

    @property
    def generated_tokens(self) -> int:
        return len(self.tokens)

    @property
    def tokens_per_forward(self) -> float:
        """Generated tokens per model call; 1.0 (or just under) for plain greedy decoding."""
        return len(self.tokens) / self.forwards if self.forwards else 0.0

    @property
    def latency_ms(self) -> float:
        return self.prefill_ms + self.decode_ms


class GenerationEngine(Protocol):
    """What a Completer needs of an engine: `Engine`, or a remote server's client."""

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
        """Greedily continue `prompt` (see `Engine.generate`)."""
        ...

    def prefill(
        self,
        prompt: Sequence[int],
        cancel: threading.Event | None = None,
        *,
        chunk: int | None = None,
    ) -> int:
        """Put `prompt` in the prefix cache without generating; the tokens computed."""
        ...
