"""From a document and a cursor to a completion: window, prompt, engine, scope, post-processing.

This is the path both `codetailor complete` and the server take. It needs a
tokenizer (anything with `encode`/`decode`, e.g. a transformers tokenizer) and
an `Engine`, but imports neither torch nor pygls.

Token budget: the prompt fits in `window_tokens`. The suffix gets at most
`suffix_tokens` (FIM formats only), extra context from other files at most
`context_tokens`, and the prefix the rest. Every cut falls on a line boundary
and keeps the lines nearest the cursor: the prefix loses its first lines, the
suffix its last, a context snippet its last. The prompt starts with what
changes least (context, the file's path), so the KV cache keeps hitting.

Before anything is tokenized, each part is cut by characters to what its
token budget could ever hold (MAX_CHARS_PER_TOKEN per token), so building a
prompt costs the same on a 4 MB line as on a short one; a line longer than its
budget is the only cut not on a line boundary (the prefix keeps the end of the
cursor's line, the suffix its start).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsp_server.completion.healing import Healed, TokenHealer
from lsp_server.completion.languages import language_for
from lsp_server.completion.postprocess import RULES, postprocess
from lsp_server.completion.prompt import PromptFormat, Snippet, build_prompt
from lsp_server.completion.scope import Mode, Scope, decide_scope
from lsp_server.model.engine import Generation, GenerationEngine

# The window start only moves in steps of this many lines, so that while the
# user types, the prompt keeps its beginning and the KV cache keeps hitting.
WINDOW_STEP_LINES = 16
# No token of a code tokenizer covers more characters than this (long runs of
# spaces come closest), so N tokens of text lie within N * 16 characters.
MAX_CHARS_PER_TOKEN = 16
# Scope decisions and post-processing look at most this far from the cursor
# (tree-sitter parses up to 512 KB; scanning a 4 MB line in Python takes seconds).
NEAR_CHARS = 64 * 1024
# Warming prefills in smaller chunks than a request, so that a request arriving
# meanwhile waits for at most one of them (~0.25 s on a CPU for SmolLM2-135M).
WARM_CHUNK = 64


@dataclass(frozen=True)
class Completion:
    """A finished completion, with the prompt and the engine's counts behind it."""

    text: str
    prompt: str
    scope: Scope
    generation: Generation
    raw: str = ""  # what the model generated after the cursor, before post-processing
    context: tuple[Snippet, ...] = field(default_factory=tuple)  # snippets in the prompt

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
            "forwards": g.forwards,
            "tokens_per_forward": round(g.tokens_per_forward, 3),
            "drafted_tokens": g.drafted,
            "accepted_tokens": g.accepted,
            "multiline": self.scope.multiline,
            "scope": self.scope.reason,
            "raw": self.raw,
            "context_files": [c.path for c in self.context],
        }


def cut_prefix_chars(prefix: str, max_chars: int) -> tuple[str, int]:
    """(the end of `prefix` in at most `max_chars` characters, how many lines were dropped).

    The cut falls on a line start when one is within reach; otherwise inside
    the cursor's line, which is then longer than anything the window could show.
    """
    if len(prefix) <= max_chars:
        return prefix, 0
    start = len(prefix) - max_chars
    newline = prefix.find("\n", start)
    if newline != -1:
        start = newline + 1
    return prefix[start:], prefix.count("\n", 0, start)


def clip_prefix(
    prefix: str, budget: int, count: Callable[[str], int], *, first_line: int = 0
) -> str:
    """The end of `prefix` that fits in `budget` tokens, starting on a line boundary.

    The cursor's own line is always kept. The start snaps forward to a multiple
    of WINDOW_STEP_LINES, so it stays put until the prompt outgrows the window
    and then jumps, rather than sliding with every keystroke. `first_line` is
    the document line `prefix` starts at (after `cut_prefix_chars`): the steps
    are counted in document lines.
    """
    prefix, dropped = cut_prefix_chars(prefix, max(budget, 0) * MAX_CHARS_PER_TOKEN)
    first_line += dropped
    lines = prefix.split("\n")
    if count(lines[-1]) > budget:
        return clip_line_start(lines[-1], budget, count)
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
        if not first_line:
            return prefix
        first = 0
    if (first_line + first) % WINDOW_STEP_LINES:
        step = WINDOW_STEP_LINES - (first_line + first) % WINDOW_STEP_LINES
        first = min(first + step, len(lines) - 1)
    return "\n".join(lines[first:])


def clip_line_start(line: str, budget: int, count: Callable[[str], int]) -> str:
    """The end of one over-long line (minified code) that fits in `budget` tokens.

    The only cut that is not on a line boundary: there is none to cut at.
    """
    keep = min(len(line), max(budget, 0) * MAX_CHARS_PER_TOKEN)
    while keep > 0 and count(line[-keep:]) > budget:
        keep = keep * 3 // 4
    return line[-keep:] if keep else ""


def clip_line_end(line: str, budget: int, count: Callable[[str], int]) -> str:
    """The start of one over-long line that fits in `budget` tokens (the suffix's first line)."""
    keep = min(len(line), max(budget, 0) * MAX_CHARS_PER_TOKEN)
    while keep > 0 and count(line[:keep]) > budget:
        keep = keep * 3 // 4
    return line[:keep]


def fit_snippets(
    snippets: Sequence[Snippet], budget: int, count: Callable[[str], int], *, seen: str = ""
) -> list[Snippet]:
    """The snippets, best first, that fit in `budget` tokens together.

    A snippet already contained in `seen` (the window of the current file) or
    in an earlier snippet is skipped; the first that does not fit whole is cut
    to the lines that do (its first lines, where its match usually starts),
    and the filling stops there, so the last snippet is the least relevant.
    """
    chosen: list[Snippet] = []
    used = 0
    for snippet in snippets:
        text = snippet.text.strip("\n")
        if not text.strip() or text in seen or any(text in c.text for c in chosen):
            continue
        cost = _snippet_cost(snippet.path, text, count)
        if used + cost > budget:
            head = text.split("\n")
            while head and used + _snippet_cost(snippet.path, "\n".join(head), count) > budget:
                head.pop()
            if any(line.strip() for line in head):
                chosen.append(Snippet(snippet.path, "\n".join(head)))
            break
        chosen.append(Snippet(snippet.path, text))
        used += cost
    return chosen


def _snippet_cost(path: str, text: str, count: Callable[[str], int]) -> int:
    # The path line, separators, and a comment marker per line where the
    # format has no file separator and comments the snippet out.
    return count(f"{path}\n{text}\n") + 2 + text.count("\n") + 1


def clip_suffix(suffix: str, budget: int, count: Callable[[str], int]) -> str:
    """The start of `suffix` that fits in `budget` tokens, ending on a line boundary.

    The rest of the cursor's line is kept, up to the whole budget: it is what the
    completion must not repeat, and its start matters most.
    """
    if budget <= 0:
        return ""
    lines = suffix[: budget * MAX_CHARS_PER_TOKEN].split("\n")
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = count(line + "\n")
        if used + cost > budget:
            if not kept:
                kept.append(clip_line_end(line, budget, count))
            break
        kept.append(line)
        used += cost
    return "\n".join(kept)


def rejoin_held_whitespace(generated: str, held: str) -> str:
    """The generated text as it continues the cursor, given whitespace `held` back from the prompt.

    Where the model re-typed that whitespace, it is taken off. Where it laid
    the whitespace out differently, the user's newlines stand, and of the
    model's indentation only what goes beyond the indentation the user already
    typed on the cursor's line is kept (at a line start, that is all of it);
    blank lines the model adds beyond the user's are kept.
    """
    if not held or generated.startswith(held):
        return generated[len(held) :]
    body = generated.lstrip()
    lead = generated[: len(generated) - len(body)]
    *lead_lines, lead_indent = lead.split("\n")
    held_indent = held.rsplit("\n", 1)[-1]
    if len(lead_lines) > held.count("\n"):  # more newlines than the user typed
        extra = lead_lines[held.count("\n") :] + [lead_indent]
        return "\n".join(extra).lstrip(" \t") + body
    if lead_indent.startswith(held_indent):
        return lead_indent[len(held_indent) :] + body
    return body


class Completer:
    """Completes a document at a cursor with one model, one prompt format and one engine."""

    def __init__(
        self,
        engine: GenerationEngine,
        tokenizer: Any,
        prompt_format: PromptFormat,
        *,
        window_tokens: int = 1024,
        suffix_tokens: int = 256,
        context_tokens: int | None = None,
        rules: Collection[str] = RULES,
        repo: str | None = None,
        token_healing: bool = True,
        window_limit: Callable[[float | None], int] | None = None,
    ) -> None:
        """`context_tokens` defaults to a quarter of the window; `rules` are the
        post-processing rules to apply (all by default); `repo` names the
        repository in formats that take it (Qwen2.5-Coder, StarCoder2);
        `token_healing` regenerates the prompt's last token (see healing.py);
        `window_limit(prefill_budget)` may narrow the window for one request (a
        remote engine's: the prompt its prefill fits within the first-token bound)."""
        self.engine = engine
        self.tokenizer = tokenizer
        self.format = prompt_format
        self.window_tokens = window_tokens
        self.suffix_tokens = suffix_tokens
        self.context_tokens = window_tokens // 4 if context_tokens is None else context_tokens
        self.rules = frozenset(rules)
        self.repo = repo
        self._stop_ids = self._token_ids(prompt_format.stop_tokens)
        self._healer = TokenHealer(tokenizer) if token_healing else None
        self.window_limit = window_limit
        # The last generation's tokens: drafts for the next one, which is most
        # often at the same place (the user typed on). Speed only, never output.
        self._last_tokens: list[int] = []

    def _token_ids(self, tokens: tuple[str, ...]) -> set[int]:
        vocab = self.tokenizer.get_vocab()
        return {vocab[t] for t in tokens if t in vocab}

    def _hint_ids(self, hint: str | None) -> list[int]:
        """Tokens to draft from: the suggestion shown last here, then the last generation."""
        shown = self.tokenizer.encode(hint, add_special_tokens=False) if hint else []
        return shown + self._last_tokens

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    def prompt_for(
        self,
        prefix: str,
        suffix: str,
        *,
        path: str | None = None,
        context: Sequence[Snippet] = (),
    ) -> str:
        """The exact prompt text the model sees for this cursor."""
        return self._layout(prefix, suffix, path, context)[0]

    def _layout(
        self,
        prefix: str,
        suffix: str,
        path: str | None,
        context: Sequence[Snippet],
        prefill_budget: float | None = None,
    ) -> tuple[str, list[Snippet], str]:
        """(prompt, the snippets in it, the whitespace held back from the prompt's end);
        `window_limit(prefill_budget)` may narrow the window (and its context share)."""
        fmt = self.format
        window_tokens, context_tokens = self.window_tokens, self.context_tokens
        window = self.window_limit(prefill_budget) if self.window_limit else window_tokens
        if window < window_tokens:
            context_tokens = context_tokens * window // window_tokens
            window_tokens = window
        # BPE vocabularies merge whitespace with what follows it ("\n       ",
        # " return"), so a prompt ending in whitespace leaves the model on
        # tokens it rarely saw there: after "\n        " it writes " return",
        # one column too far. The trailing whitespace is left out of the prompt
        # and taken off the start of the generated text (`rejoin_held_whitespace`).
        # Cut by characters first: nothing past what the window could hold is tokenized.
        prefix, first_line = cut_prefix_chars(prefix, window_tokens * MAX_CHARS_PER_TOKEN)
        held = prefix[len(prefix.rstrip()) :]
        prefix = prefix[: len(prefix) - len(held)]
        suffix_budget = min(self.suffix_tokens, window_tokens // 4) if fmt.is_fim else 0
        suffix = clip_suffix(suffix, suffix_budget, self.count) if suffix_budget else ""
        # Snippets that repeat the visible part of this file waste the window.
        seen = prefix[-8000:] + suffix
        chars = context_tokens * MAX_CHARS_PER_TOKEN
        context = [Snippet(c.path, c.text[:chars]) for c in context]
        snippets = fit_snippets(context, context_tokens, self.count, seen=seen)
        # build_prompt puts the last snippet nearest the cursor: the best one goes there.
        snippets.reverse()
        frame = build_prompt(fmt, "", "", path=path, context=snippets, repo=self.repo)
        fixed = self.count(frame) + (self.count(suffix) if suffix else 0) + 2
        budget = max(window_tokens - fixed, 16)
        prefix = clip_prefix(prefix, budget, self.count, first_line=first_line)
        prompt = build_prompt(fmt, prefix, suffix, path=path, context=snippets, repo=self.repo)
        return prompt, snippets, held

    def _encode(self, prompt: str) -> Healed:
        """The prompt's token ids as the engine gets them (healed: see healing.py)."""
        ids = self.tokenizer.encode(prompt, add_special_tokens=False)
        if not ids:  # an empty document: start from the model's BOS or EOS
            bos = self.tokenizer.bos_token_id
            ids = [bos if bos is not None else self.tokenizer.eos_token_id]
        return self._healer.heal(ids) if self._healer else Healed(ids)

    def prompt_ids(
        self,
        text: str,
        offset: int,
        *,
        path: str | None = None,
        context: Sequence[Snippet] = (),
    ) -> list[int]:
        """The token ids `complete` feeds the engine at this cursor, without generating."""
        prompt = self._layout(text[:offset], text[offset:], path, context)[0]
        return self._encode(prompt).ids

    def warm(
        self,
        text: str,
        offset: int,
        *,
        path: str | None = None,
        context: Sequence[Snippet] = (),
        cancel: threading.Event | None = None,
    ) -> int:
        """Prefill the prompt for this cursor into the engine's cache; returns the tokens computed.

        A request at this cursor, or later on the same window (the user types
        on), then finds its prompt cached up to the cursor. Yields to `cancel`
        between chunks of WARM_CHUNK tokens, keeping what it computed.
        """
        ids = self.prompt_ids(text, offset, path=path, context=context)
        return self.engine.prefill(ids, cancel, chunk=WARM_CHUNK)

    def complete(
        self,
        text: str,
        offset: int,
        *,
        max_tokens: int = 64,
        mode: Mode = "auto",
        time_budget: float | None = None,
        cancel: threading.Event | None = None,
        path: str | None = None,
        context: Sequence[Snippet] = (),
        language_id: str | None = None,
        hint: str | None = None,
        prefill_budget: float | None = None,
    ) -> Completion:
        """Complete `text` at character `offset` (0 <= offset <= len(text)).

        `time_budget` (s) bounds decoding, from the end of prefill;
        `prefill_budget` (s) gives up on a longer prefill (what it did stays
        cached). `hint`, the suggestion shown last here, only speeds decoding.

        `path` is the document's workspace-relative path: it picks the language
        (tree-sitter scope decisions, comment syntax) and heads the file in the
        prompt. `context` holds snippets of other files, best first (e.g. from
        `ContextIndex.query`); those that fit the context budget join the prompt.
        `language_id` (the LSP languageId) names the language where the path
        does not.
        """
        if not 0 <= offset <= len(text):
            raise ValueError(f"offset {offset} is outside the document (0..{len(text)})")
        # The prompt's window is cut from the whole prefix (its start moves in steps of
        # document lines); scope and post-processing look only at text near the cursor.
        prompt, snippets, held = self._layout(
            text[:offset], text[offset:], path, context, prefill_budget
        )
        prefix = text[max(offset - NEAR_CHARS, 0) : offset]
        suffix = text[offset : offset + NEAR_CHARS]
        language = language_for(path, language_id) if path or language_id else None
        scope = decide_scope(prefix, suffix, mode, language=language)
        healed = self._encode(prompt)
        stop_ids = self._stop_ids
        use_scope = "scope" in self.rules

        def continuation(tokens: Sequence[int]) -> str:
            """What the generated tokens add at the cursor."""
            text = self.tokenizer.decode(tokens)
            if healed.tail and text.startswith(healed.tail):
                text = text[len(healed.tail) :]  # the prompt's own last token, regenerated
            return rejoin_held_whitespace(text, held)

        def stop(tokens: Sequence[int]) -> bool:
            if tokens[-1] in stop_ids:
                return True
            return use_scope and scope.should_stop(continuation(tokens))

        now = time.monotonic()
        generation = self.engine.generate(
            healed.ids,
            # The healed token re-types prompt text: it does not count against the budget.
            max_new_tokens=max_tokens + (1 if healed.tail else 0),
            stop=stop,
            deadline=now + time_budget if time_budget else None,
            cancel=cancel,
            first_allowed=healed.allowed,
            hint=self._hint_ids(hint),
            prefill_deadline=now + prefill_budget if prefill_budget else None,
        )
        if generation.tokens:
            self._last_tokens = list(generation.tokens)
        raw = continuation([t for t in generation.tokens if t not in stop_ids])
        completion = ""
        if generation.stop_reason != "cancelled":
            completion = postprocess(raw, prefix, suffix, scope, rules=self.rules)
        return Completion(
            text=completion,
            prompt=prompt,
            scope=scope,
            generation=generation,
            raw=raw,
            context=tuple(snippets),
        )
