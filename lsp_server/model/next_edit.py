"""The next-edit predictor: the model rewrites the window around the cursor.

`NextEditPredictor` lays the request out in its next-edit format
(lsp_server.completion.next_edit_prompt), trims the edit history to its token
budget (most recent edits kept), and asks a `GenerationEngine` to continue the
prompt greedily. The current window is passed as the engine's drafting hint: most
of the output copies it, so the local `Engine` drafts those tokens and verifies
them several per forward (the output is plain greedy decoding's, only faster).
The stop rule (`rewrite_end`) ends generation as soon as the output has reproduced
the rest of the window; the remote engine closes its stream on the same rule.

`next_edit_predictor(completer)` gives each completer's engine one predictor (kept
beside it), which is how the model host hands them out.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from lsp_server.completion.generation import Generation, GenerationEngine
from lsp_server.completion.next_edit import (
    NextEditAnswer,
    NextEditRequest,
    RecentEdit,
    WindowEdit,
)
from lsp_server.completion.next_edit_gate import (
    DEFAULT_GATE,
    EditConfidence,
    ShowGate,
    edit_confidence,
)
from lsp_server.completion.next_edit_prompt import NextEditFormat, next_edit_format, with_newline
from lsp_server.completion.next_edit_text import (
    ended_window,
    rewrite_end,
    rewrite_hopeless,
    settle,
)

# Window lines (above + the cursor's + below): Sweep's 10 + 1 + 10 where prefill is cheap;
# on a CPU 5 + 1 + 5. The prompt holds the window twice, and a rewrite copies it (drafted,
# ~7 tokens per forward): with SmolLM2-135M (int4) on a quiet machine, `bench nextedit`
# measured p50 540 ms / p95 822 ms at 11 lines against 375 / 696 ms at 5, completions
# ~580 ms beside them (docs/benchmarks.md), so 11 lines meet the 1 s target with room.
# (An earlier ~2.7 s projection for 11 lines came from a machine at load 7-11.)
# Drafts per forward of a window rewrite: it mostly copies the window it is drafted from,
# so long drafts are taken, where a completion's drafts (the engine's default, 3 for
# 4-bit weights) are rejected often enough that a shorter forward pays. 1 + 8 tokens is
# the widest forward the 4-bit layers' kernel takes (int4.ROWS). `bench nextedit`
# (SmolLM2-135M int4, 11 lines, two runs each): 3.43 tokens per forward with the
# engine's 3, 6.77 with 8; p50 867 / 802 ms -> 701 / 780, p95 1,304 / 1,314 -> 1,062 /
# 1,152 (docs/benchmarks.md, next edits).
REWRITE_DRAFT_TOKENS = 8
WINDOW_LINES_GPU = 21
WINDOW_LINES_CPU = 11
HISTORY_TOKENS_GPU = 1024
HISTORY_TOKENS_CPU = 192


class NextEditPredictor:
    """Writes the updated window for a `NextEditRequest` with a `GenerationEngine`."""

    def __init__(
        self,
        engine: GenerationEngine,
        tokenizer: Any,
        fmt: NextEditFormat,
        *,
        window_lines: int = WINDOW_LINES_GPU,
        history_tokens: int = HISTORY_TOKENS_GPU,
        gate: ShowGate = DEFAULT_GATE,
    ) -> None:
        """`gate` decides which edits are shown (`OPEN_GATE`: all of them)."""
        self.engine = engine
        self.gate = gate
        self.tokenizer = tokenizer
        self.format = fmt
        self.window_lines = window_lines
        self.history_tokens = history_tokens
        end = tokenizer.convert_tokens_to_ids(fmt.end_marker) if fmt.end_marker else None
        unk = getattr(tokenizer, "unk_token_id", None)
        self._end_id: int | None = end if isinstance(end, int) and end != unk else None

    def predict(
        self,
        request: NextEditRequest,
        *,
        cancel: threading.Event | None = None,
        time_budget: float | None = None,
    ) -> NextEditAnswer:
        """The model's updated window and the minimal edit it makes (None: no edit).

        The prompt's last line break is left for the model to write: tokenizers merge a
        line break with the next line's indentation, and a prompt cut between the two
        would make the model start the window's first line without its indentation.
        """
        started = time.perf_counter()
        request = NextEditRequest(request.path, self.fitting(request.history), request.window)
        text, lead = split_prompt(self.format, request)
        prompt = self.encode(text)
        current = request.window.current
        hint = self.encode(lead + with_newline(current))
        deadline = None if time_budget is None else time.monotonic() + time_budget
        generation = self.engine.generate(
            prompt,
            max_new_tokens=len(hint) + len(hint) // 2 + 16,
            stop=self._stop_rule(current, lead),
            deadline=deadline,
            cancel=cancel,
            hint=hint,
            draft_tokens=REWRITE_DRAFT_TOKENS,
        )
        output = _after(lead, self.tokenizer.decode(generation.tokens, skip_special_tokens=False))
        updated = rewrite_end(current, output, self.format.end_marker)
        # The model ended (EOS, or a remote server's stop string): its text is the window,
        # unless it had run past a change without ever lining up again (given up).
        ended = generation.stop_reason in ("eos", "stop")
        if updated is None and ended and not rewrite_hopeless(current, output):
            updated = ended_window(current, output)
        fmt = self.format
        layout = (fmt.sentinels, fmt.layout_lines)
        edit, why = settle(request.window, updated, request.history, *layout)
        confidence = withheld = None
        if edit is not None and updated is not None:
            confidence = self._confidence(current, updated, edit, generation, lead)
            if not self.gate.shows(confidence):
                edit, withheld, why = None, edit, "unsure"
        return NextEditAnswer(
            updated=updated,
            edit=edit,
            stop_reason=why or generation.stop_reason,
            prompt_tokens=generation.prompt_tokens,
            cached_tokens=generation.cached_tokens,
            generated_tokens=generation.generated_tokens,
            forwards=generation.forwards,
            latency_ms=(time.perf_counter() - started) * 1000,
            prefill_ms=generation.prefill_ms,
            confidence=confidence,
            withheld=withheld,
        )

    def _confidence(
        self, current: str, updated: str, edit: WindowEdit, generation: Generation, lead: str
    ) -> EditConfidence:
        """The model's confidence in `edit`, from the scores of the tokens that wrote it."""
        ends, at = [], -len(lead)  # offsets in the output after the prompt's line break
        for token in generation.tokens:
            at += len(self.tokenizer.decode([token], skip_special_tokens=False))
            ends.append(at)
        g = generation
        return edit_confidence(current, updated, edit, ends, g.logprobs, g.entropies, g.stop_reason)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def fitting(self, history: Sequence[RecentEdit]) -> tuple[RecentEdit, ...]:
        """The most recent edits whose blocks fit the history's token budget, oldest first."""
        return fit_history(history, self.format, self.encode, self.history_tokens)

    def _stop_rule(self, current: str, lead: str) -> Any:
        """True once the tokens so far settle the window, or can no longer (checked at
        line ends only)."""
        end_id, end_marker = self._end_id, self.format.end_marker

        def stop(tokens: Sequence[int]) -> bool:
            last = tokens[-1]
            if last != end_id and "\n" not in self.tokenizer.decode([last]):
                return False
            text = _after(lead, self.tokenizer.decode(list(tokens), skip_special_tokens=False))
            done = rewrite_end(current, text, end_marker) is not None
            return done or rewrite_hopeless(current, text)

        return stop


def fit_history(
    history: Sequence[RecentEdit],
    fmt: NextEditFormat,
    encode: Callable[[str], list[int]],
    budget: int,
) -> tuple[RecentEdit, ...]:
    """The most recent edits whose blocks fit `budget` tokens, oldest first: what the
    predictor sends, and what `finetune` trains on."""
    kept: list[RecentEdit] = []
    used = 0
    for edit in reversed(history):
        used += len(encode(fmt.history_block(edit)))
        if used > budget:
            break
        kept.append(edit)
    return tuple(reversed(kept))


def training_pair(
    request: NextEditRequest, expected: str, fmt: NextEditFormat, encode: Callable[[str], list[int]]
) -> tuple[list[int], list[int]]:
    """(prompt ids, target ids) of a request whose answer is `expected`, split as `predict`
    splits them: the prompt's last line break starts the target, which ends with the
    format's end marker."""
    text, lead = split_prompt(fmt, request)
    return encode(text), encode(lead + with_newline(expected) + fmt.end_marker)


def split_prompt(fmt: NextEditFormat, request: NextEditRequest) -> tuple[str, str]:
    """The prompt text without its last line break, and that line break (the output's
    start; see `NextEditPredictor.predict`)."""
    text = fmt.prompt(request)
    lead = "\n" if text.endswith("\n") else ""
    return text[: len(text) - len(lead)], lead


def window_for(cpu: bool) -> tuple[int, int]:
    """(window lines, history tokens) of the server's next-edit requests on a CPU or not."""
    if cpu:
        return WINDOW_LINES_CPU, HISTORY_TOKENS_CPU
    return WINDOW_LINES_GPU, HISTORY_TOKENS_GPU


def _after(lead: str, output: str) -> str:
    """The model's output without the line break that ends the prompt's last line."""
    return output[len(lead) :] if lead and output.startswith(lead) else output


_PREDICTORS: weakref.WeakKeyDictionary[Any, NextEditPredictor] = weakref.WeakKeyDictionary()


def next_edit_predictor(completer: Any, format_name: str | None = None) -> NextEditPredictor:
    """The predictor beside `completer` (a `Completer`): its engine, its tokenizer, the
    next-edit format `format_name` (None: Sweep's) with the tokenizer's file separator;
    the CPU window when the completer's prompt window is a CPU's (see model.wiring)."""
    predictor = _PREDICTORS.get(completer)
    name = format_name or "sweep"
    if predictor is None or predictor.format.name != name:
        from lsp_server.model.wiring import tokenizer_special_tokens

        tokenizer = completer.tokenizer
        fmt = next_edit_format(name, tokenizer_special_tokens(tokenizer))
        window = getattr(completer, "window", None)
        lines, history = window_for(getattr(window, "window_tokens", 4096) <= 1024)
        predictor = NextEditPredictor(
            completer.engine, tokenizer, fmt, window_lines=lines, history_tokens=history
        )
        _PREDICTORS[completer] = predictor
    return predictor
