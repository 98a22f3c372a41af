"""What each request of a typing replay waited for, and what the slow tenth have in common.

The server's status after a request holds the facts of the last model run
(`lastGeneration`: its prompt and cached tokens, prefill and decode times, how
many tokens it generated, the time `complete` took) and the empty answers by
reason (`emptyAnswers`). `RequestFacts.from_status` reads one request's facts
from the status before and after it; `cause_of` names the part that took most
of its round trip:

- `typing_through`: answered without running the model (the previous
  suggestion, typed through, or an empty answer decided before the model);
- `waited`: the round trip less the model's `complete` (the request queued
  behind other work on the model, such as warming the next window);
- `first_prefill`: a document's first request, which prefills its window;
- `window_moved`: a later request that prefilled at least `MOVED_TOKENS`
  uncached tokens (the prompt's start moved, or its context changed, so the KV
  cache missed), whichever part took longer;
- `prefill`: a smaller prefill that still took most of the time;
- `max_tokens`: decoding that ran to the request's token limit;
- `decode`: decoding that stopped earlier (a newline, the time budget);
- `prompt`: building and tokenizing the prompt, retrieval included.

Pure: no LSP, no model.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from lsp_server.measure.quality.metrics import percentile
from lsp_server.measure.replay import accepted_text

# A prefill of this many uncached tokens after a document's first request means the
# prompt's cached beginning was lost, not extended by what was typed (a word is a few).
MOVED_TOKENS = 64


@dataclass(frozen=True)
class RequestFacts:
    """One request's round trip and, where it ran the model, that run's parts (ms)."""

    elapsed_ms: float
    first_in_document: bool
    ran_model: bool = False
    complete_ms: float = 0.0
    prefill_ms: float = 0.0
    decode_ms: float = 0.0
    uncached_tokens: int = 0
    generated_tokens: int = 0
    stop_reason: str = ""
    empty_reason: str = ""  # why the answer was empty ("" for a suggestion)
    # A `quiet` answer's hidden suggestion: would the typist have taken (part of) it?
    # None where the answer was not quiet, or the file's text there was not given.
    quiet_taken: bool | None = None

    @staticmethod
    def from_status(
        elapsed_ms: float,
        first_in_document: bool,
        before: dict[str, Any],
        after: dict[str, Any],
        truth: str | None = None,
    ) -> RequestFacts:
        """The facts of the request answered between the statuses `before` and `after`;
        `truth`, what the file says from the cursor on, judges what a `quiet` answer hid
        (the suggestion of its model run, `lastGeneration`'s text) by the simulated
        user's rule (`replay.accepted_text`)."""
        then, now = before.get("emptyAnswers") or {}, after.get("emptyAnswers") or {}
        reasons = [r for r, n in now.items() if n > then.get(r, 0)]
        empty = reasons[0] if reasons else ""
        generation = after.get("lastGeneration") or {}
        previous = (before.get("lastGeneration") or {}).get("request")
        if not generation or generation.get("request") == previous:
            return RequestFacts(elapsed_ms, first_in_document, empty_reason=empty)
        quiet_taken = None
        if empty == "quiet" and truth is not None:
            quiet_taken = bool(accepted_text(str(generation.get("text", "")), truth))
        return RequestFacts(
            elapsed_ms,
            first_in_document,
            ran_model=True,
            complete_ms=generation.get("complete_ms", 0.0),
            prefill_ms=generation.get("prefill_ms", 0.0),
            decode_ms=generation.get("decode_ms", 0.0),
            uncached_tokens=generation.get("prompt_tokens", 0) - generation.get("cached_tokens", 0),
            generated_tokens=generation.get("generated_tokens", 0),
            stop_reason=generation.get("stop_reason", ""),
            empty_reason=empty,
            quiet_taken=quiet_taken,
        )


def cause_of(facts: RequestFacts, max_tokens: int) -> str:
    """The part of `facts`' round trip that took longest, named as the module says."""
    if not facts.ran_model:
        return "typing_through"
    parts = {
        "waited": facts.elapsed_ms - facts.complete_ms,
        "prefill": facts.prefill_ms,
        "decode": facts.decode_ms,
        "prompt": facts.complete_ms - facts.prefill_ms - facts.decode_ms,
    }
    part = max(parts, key=lambda p: parts[p])
    if part != "waited" and facts.first_in_document:
        return "first_prefill"
    if part != "waited" and facts.uncached_tokens >= MOVED_TOKENS:
        return "window_moved"
    if part == "decode" and facts.generated_tokens >= max_tokens:
        return "max_tokens"
    return part


def tail_report(requests: list[RequestFacts], max_tokens: int) -> dict[str, Any]:
    """Causes over all requests and over the slow tenth (at or above the 90th percentile),
    the empty answers by reason, what the `quiet` ones hid (judged where the file's text
    was given: `quiet_hid`), and the slow tenth's facts, slowest first."""
    if not requests:
        return {}
    p90 = percentile([r.elapsed_ms for r in requests], 90)
    slow = sorted((r for r in requests if r.elapsed_ms >= p90), key=lambda r: -r.elapsed_ms)
    judged = [r.quiet_taken for r in requests if r.quiet_taken is not None]
    report = {
        "p90_ms": round(p90, 1),
        "causes": _counts(cause_of(r, max_tokens) for r in requests),
        "slow_tenth_causes": _counts(cause_of(r, max_tokens) for r in slow),
        "empty_answers": _counts(r.empty_reason for r in requests if r.empty_reason),
        "slow_tenth": [asdict(r) | {"cause": cause_of(r, max_tokens)} for r in slow],
    }
    if judged:
        taken = sum(judged)
        report["quiet_hid"] = {"would_be_taken": taken, "would_not": len(judged) - taken}
    return report


def _counts(names: Any) -> dict[str, int]:
    """Counts by name, most common first."""
    return dict(Counter(names).most_common())
