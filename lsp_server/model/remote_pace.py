"""How fast a remote engine prefills, learned from its own answers, and the prompt window that fits.

A remote engine's time to the first token is mostly its prefill, and its
prefill grows with the prompt: a CPU engine (`transformers serve`, llama-server)
prefills a few hundred tokens per second, a busy GPU one a few thousand. The
engine cannot be asked; it is watched. Each answer gives one sample, the time
to its first token against its prompt tokens; the last few samples are fit with
a line, a fixed cost per request (~2 s for `transformers serve` on a busy
two-core CPU) plus seconds per prompt token. Until the samples span enough
prompt lengths for a line, the whole time counts per token (pessimistic for
short prompts). A first token that never came before the bound is a sample too,
of a little more than the bound.

The window is the most prompt tokens the first-token bound allows at that pace,
with a margin. It moves in whole steps (the floor doubled, up to the ceiling)
and grows only with room to spare, so that it stays put from one request to the
next: the window's head is the start of the prompt, and an engine's prefix
cache (vLLM's, llama-server's) only hits while the head stays where it was.

Pure: no clock, no I/O; the engine passes the times it measured.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

# Nothing known yet: the first request gets this many prompt tokens (at most the
# ceiling). A CPU engine prefills it in 2-3 s when quiet, 5-8 s on a busy two-core
# machine; a GPU engine shows at once that it can take the whole ceiling, which the
# next request then gets.
START_TOKENS = 512
FLOOR_TOKENS = 256
# The share of the first-token bound a prompt is sized to use: the rest is for
# a busier moment than the samples saw.
MARGIN = 0.7
# A timed-out prompt took longer than the bound: counted as this many bounds, so that
# the window halves at once (MARGIN / TIMEOUT_FACTOR just above one half).
TIMEOUT_FACTOR = 1.25
# The window grows to a step only when the pace leaves this much room beyond it.
GROW_ROOM = 1.25
# The samples kept: the engine's load changes, the last few say how it is now.
SAMPLES = 8
# A line is fit once the samples' prompt lengths differ by this factor.
SPREAD = 1.5
# Shorter prompts teach nothing about prefill: their time is the engine's overhead, and
# for the server's warm-up request its loading the model.
MIN_SAMPLE_TOKENS = 64
MIN_SECONDS_PER_TOKEN = 1e-6  # a million tokens a second: faster is noise


@dataclass
class PrefillPace:
    """The engine's prefill pace and the window it allows: `window_for` before each request,
    `observed` or `timed_out` after it."""

    ceiling: int  # the configured window: never more
    floor: int = FLOOR_TOKENS  # never less, however slow the engine
    window: int = 0  # the window chosen last (0: not yet)
    samples: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=SAMPLES))

    def __post_init__(self) -> None:
        self.floor = max(1, min(self.floor, self.ceiling))
        if not self.window:
            self.window = self._step_at_most(min(START_TOKENS, self.ceiling))

    def window_for(self, bound_s: float | None) -> int:
        """The prompt window for a request whose first token is due within `bound_s`
        (None: no bound, the ceiling)."""
        if bound_s is None:
            return self.ceiling
        fit = self.fit()
        if fit is None:
            return self.window
        overhead, per_token = fit
        fits = max(bound_s * MARGIN - overhead, 0.0) / per_token
        if fits < self.window:
            self.window = self._step_at_most(fits)
        else:
            self.window = max(self.window, self._step_at_most(fits / GROW_ROOM))
        return self.window

    def observed(self, prompt_tokens: int, first_token_s: float) -> None:
        """A first token came `first_token_s` after the request for a prompt this long."""
        if prompt_tokens >= MIN_SAMPLE_TOKENS:
            self.samples.append((prompt_tokens, max(first_token_s, 0.0)))

    def timed_out(self, prompt_tokens: int, bound_s: float) -> None:
        """No first token within `bound_s` for a prompt this long."""
        if prompt_tokens >= MIN_SAMPLE_TOKENS:
            self.samples.append((prompt_tokens, TIMEOUT_FACTOR * bound_s))

    def fit(self) -> tuple[float, float] | None:
        """(fixed seconds per request, seconds per prompt token) from the samples; None
        before the first."""
        if not self.samples:
            return None
        ns = [n for n, _ in self.samples]
        ts = [t for _, t in self.samples]
        ratio = max(sum(t / n for n, t in self.samples) / len(ns), MIN_SECONDS_PER_TOKEN)
        if max(ns) < SPREAD * min(ns):
            return 0.0, ratio
        mean_n, mean_t = sum(ns) / len(ns), sum(ts) / len(ts)
        var = sum((n - mean_n) ** 2 for n in ns)
        slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(ns, ts, strict=True)) / var
        overhead = mean_t - slope * mean_n
        if slope < MIN_SECONDS_PER_TOKEN or overhead < 0:
            return 0.0, ratio
        return overhead, slope

    def tokens_per_second(self) -> float | None:
        """The learned prefill speed (None: nothing learned yet)."""
        fit = self.fit()
        return None if fit is None else 1.0 / fit[1]

    def _step_at_most(self, tokens: float) -> int:
        """The largest step (the floor doubled, or the ceiling) not above `tokens`;
        the floor when none is."""
        if tokens >= self.ceiling:
            return self.ceiling
        step = self.floor
        while step * 2 <= tokens:
            step *= 2
        return step
