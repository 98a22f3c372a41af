"""From a document and a cursor to a completion: window, prompt, engine, scope.

This is the path both `codetailor complete` and the server take. It needs a
tokenizer (anything with `encode`/`decode`, e.g. a transformers tokenizer) and
an `Engine`, but imports neither torch nor pygls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsp_server.completion import Mode, Scope, decide_scope
from lsp_server.engine import Engine, Generation
from lsp_server.prompt import PromptFormat, build_prompt

# The window start only moves in steps of this many lines, so that while the
# user types, the prompt keeps its beginning and the KV cache keeps hitting.
WINDOW_STEP_LINES = 16


@dataclass(frozen=True)
class Completion:
    """A finished completion, with the prompt and the engine's counts behind it."""

    text: str
    prompt: str
    scope: Scope
    generation: Generation

    def as_dict(self) -> dict[str, Any]:
        g = self.generation
        return {
            "text": self.text,
            "latency_ms": round(g.latency_ms, 1),
            "prefill_ms": round(g.prefill_ms, 1),
            "decode_ms": round(g.decode_ms, 1),
            "prompt_tokens": g.prompt_tokens,
            "cached_tokens": g.cached_tokens,
            "generated_tokens": g.generated_tokens,
            "stop_reason": g.stop_reason,
            "multiline": self.scope.multiline,
        }


def clip_prefix(prefix: str, budget: int, count: Callable[[str], int]) -> str:
    """The end of `prefix` that fits in `budget` tokens, starting on a line boundary.

    The cursor's own line is always kept. The start snaps forward to a multiple
    of WINDOW_STEP_LINES, so it stays put until the prompt outgrows the window
    and then jumps, rather than sliding with every keystroke.
    """
    lines = prefix.split("\n")
    # Lines are counted from the cursor back until the budget is spent, so a
    # huge file costs no more than a small one.
    first, used = len(lines) - 1, count(lines[-1])
    for i in range(len(lines) - 2, -1, -1):
        cost = count(lines[i] + "\n")
        if used + cost > budget:
            break
        used += cost
        first = i
    else:
        return prefix
    if first % WINDOW_STEP_LINES:
        first = min(first + WINDOW_STEP_LINES - first % WINDOW_STEP_LINES, len(lines) - 1)
    return "\n".join(lines[first:])


def clip_suffix(suffix: str, budget: int, count: Callable[[str], int]) -> str:
    """The start of `suffix` that fits in `budget` tokens, ending on a line boundary."""
    lines = suffix.split("\n")
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = count(line + "\n")
        if used + cost > budget and kept:
            break
        kept.append(line)
        used += cost
    return "\n".join(kept)


class Completer:
    """Completes a document at a cursor with one model, one prompt format and one engine."""

    def __init__(
        self,
        engine: Engine,
        tokenizer: Any,
        prompt_format: PromptFormat,
        *,
        window_tokens: int = 1024,
        suffix_tokens: int = 256,
    ) -> None:
        self.engine = engine
        self.tokenizer = tokenizer
        self.format = prompt_format
        self.window_tokens = window_tokens
        self.suffix_tokens = suffix_tokens
        self._stop_ids = self._token_ids(prompt_format.stop_tokens)

    def _token_ids(self, tokens: tuple[str, ...]) -> set[int]:
        vocab = self.tokenizer.get_vocab()
        return {vocab[t] for t in tokens if t in vocab}

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_for(self, prefix: str, suffix: str) -> str:
        """The exact prompt text the model sees for this cursor."""
        suffix_budget = self.suffix_tokens if self.format.is_fim else 0
        suffix = clip_suffix(suffix, suffix_budget, self.count) if suffix_budget else ""
        prefix_budget = self.window_tokens - (self.count(suffix) if suffix else 0) - 8
        return build_prompt(self.format, clip_prefix(prefix, prefix_budget, self.count), suffix)

    def complete(
        self,
        text: str,
        offset: int,
        *,
        max_tokens: int = 64,
        mode: Mode = "auto",
        time_budget: float | None = None,
        cancel: threading.Event | None = None,
    ) -> Completion:
        """Complete `text` at character `offset` (0 <= offset <= len(text))."""
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} is outside the document (0..{len(text)})")
        prefix, suffix = text[:offset], text[offset:]
        scope = decide_scope(prefix, suffix, mode)
        prompt = self.prompt_for(prefix, suffix)
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:  # an empty document: start from the model's BOS or EOS
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else self.tokenizer.eos_token_id]
        decode = self.tokenizer.decode
        stop_ids = self._stop_ids

        def stop(tokens: list[int]) -> bool:
            return tokens[-1] in stop_ids or scope.should_stop(decode(tokens))

        deadline = time.monotonic() + time_budget if time_budget else None
        generation = self.engine.generate(
            ids, max_new_tokens=max_tokens, stop=stop, deadline=deadline, cancel=cancel
        )
        tokens = [t for t in generation.tokens if t not in stop_ids]
        completion = scope.finish(decode(tokens)) if generation.stop_reason != "cancelled" else ""
        return Completion(text=completion, prompt=prompt, scope=scope, generation=generation)
