"""Answers that explain themselves: why a completion is empty, and where a cut one ends.

- `end_at_boundary`: a block completion that ran out of tokens (`max_tokens`)
  ends at its last syntactic boundary, a line whose brackets are all closed and
  that does not end mid-expression (`return len(list(map(lambda file` is not
  one), instead of mid-expression.
- `why_empty`: the reason an empty answer is empty, in words, from the same
  facts the server's status counts empty answers by (the model ended at once,
  the time budget ran out, a post-processing rule removed what it wrote).

Pure text; no model, no LSP.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from lsp_server.completion.generation import Generation
from lsp_server.completion.postprocess import (
    OPENER_OF,
    OPENERS,
    QUOTES,
    RULES,
    rule_steps,
)
from lsp_server.completion.scope import Scope

# A line ending in one of these continues on the next: an operator, a separator, an
# opener, a line continuation, a block header without its body.
_CONTINUES = re.compile(r"(?:[-+*/%=<>&|^~.,:\\([{]|\b(?:and|or|not|in|is|lambda|else))\s*$")
_LINE_COMMENT = re.compile(r"\s(#|//).*$")

# What each post-processing rule removing everything means, for a person.
RULE_REASONS = {
    "scope": "what the model wrote ends the line or block at once",
    "repetition": "the model only repeated the line above (or looped)",
    "indentation": "the model wrote only indentation",
    "brackets": "the model only closed brackets the text after the cursor already closes",
    "overlap": "the model only re-typed the text after the cursor",
    "whitespace": "the model wrote only whitespace",
    "suffix": "the text after the cursor already starts with what the model wrote",
}
STOP_REASONS = {
    "eos": "the model ended at once: it had nothing to add here",
    "stop": "the model's first line was empty (it stopped at a line end)",
    "time": "the time budget ran out before the model wrote anything",
    "first_token": "no first token within the first-token bound (firstTokenTimeoutMs)",
    "cancelled": "the request was cancelled",
    "error": "generation failed",
    "max_tokens": "the token budget ran out before the model wrote anything",
}


def end_at_boundary(text: str) -> str:
    """`text` cut back to the end of its last line that closes a statement: every
    bracket opened in `text` closed, no continuation at its end; unchanged when no
    line does (then the note says it was cut mid-expression)."""
    lines = text.split("\n")
    depth = 0
    best: int | None = None
    for i, line in enumerate(lines):
        depth = _depth_after(line, depth)
        code = _LINE_COMMENT.sub("", line).rstrip()
        if depth <= 0 and code.strip() and not _CONTINUES.search(code):
            best = i
    if best is None:
        return text
    return "\n".join(lines[: best + 1])


def _depth_after(line: str, depth: int) -> int:
    """The bracket depth after `line` (strings on the line skipped), starting at `depth`."""
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in QUOTES:
            quote = ch
        elif ch in OPENERS:
            depth += 1
        elif ch in OPENER_OF:
            depth -= 1
        elif ch == "#" or line.startswith("//", i):
            break
        i += 1
    return depth


def cut_note(generation: Generation, full: str, shown: str, max_tokens: int) -> str | None:
    """What to say about a completion the token budget cut, or None when it was not cut."""
    if generation.stop_reason != "max_tokens" or not shown:
        return None
    if shown != full:
        return (
            f"cut: the budget of {max_tokens} tokens ran out; the completion ends at its last "
            "whole statement (raise --max-tokens for more)"
        )
    return f"cut: the budget of {max_tokens} tokens ran out (raise --max-tokens for more)"


def why_empty(
    raw: str,
    prefix: str,
    suffix: str,
    scope: Scope,
    generation: Generation,
    rules: Collection[str] = RULES,
) -> str:
    """Why the answer for `raw` (what the model generated) between `prefix` and `suffix`
    is empty: the generation's stop when it wrote nothing, else the first post-processing
    rule that left nothing (the rules run in `postprocess`'s order)."""
    if not raw.strip():
        return STOP_REASONS.get(generation.stop_reason, generation.stop_reason)
    text = raw
    for rule, step in rule_steps(prefix, suffix, scope):
        if rule in rules:
            text = step(text)
            if not text.strip():
                return f"{RULE_REASONS[rule]} (it wrote {_quoted(raw)})"
    return f"{RULE_REASONS['suffix']} (it wrote {_quoted(raw)})"


def _quoted(raw: str, limit: int = 40) -> str:
    text = raw if len(raw) <= limit else raw[: limit - 3] + "..."
    return repr(text)
