"""The prompt window: which part of a document, and of other files, the prompt shows.

Pure layout, no model: the completer lays out every prompt here, and
`finetune` rebuilds logged prompts with the same code (`PromptWindow` needs
only a tokenizer to count with).

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

Trailing whitespace of the prefix is held back from the prompt
(`held_whitespace`) and rejoined to what the model writes
(`rejoin_held_whitespace`).

Pure: no pygls, no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from lsp_server.completion.prompt import PromptFormat, Snippet, build_prompt

# The window start only moves in steps of this many lines, counted from the
# document's first line, so that while the user types, the prompt keeps its
# beginning and the KV cache keeps hitting. The feedback log cuts stored
# prefixes and the session warms windows by the same step.
WINDOW_STEP_LINES = 16
# No token of a code tokenizer covers more characters than this (long runs of
# spaces come closest), so N tokens of text lie within N * 16 characters.
MAX_CHARS_PER_TOKEN = 16


class Layout(NamedTuple):
    """A laid-out prompt: its text, the snippets of other files in it (the best one
    last, nearest the cursor), and the whitespace held back from its end."""

    prompt: str
    snippets: list[Snippet]
    held: str


class PromptWindow:
    """Lays out the prompt for a cursor in one format within a token budget."""

    def __init__(
        self,
        tokenizer: Any,
        prompt_format: PromptFormat,
        *,
        window_tokens: int = 1024,
        suffix_tokens: int = 256,
        context_tokens: int | None = None,
        repo: str | None = None,
    ) -> None:
        """`tokenizer` needs only `encode`; `context_tokens` defaults to a quarter of the
        window; `repo` names the repository in formats that take it (Qwen2.5-Coder,
        StarCoder2)."""
        self.tokenizer = tokenizer
        self.format = prompt_format
        self.window_tokens = window_tokens
        self.suffix_tokens = suffix_tokens
        self.context_tokens = window_tokens // 4 if context_tokens is None else context_tokens
        self.repo = repo

    def count(self, text: str) -> int:
        """Tokens of `text` without special tokens."""
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
        return self.layout(prefix, suffix, path, context).prompt

    def layout(
        self,
        prefix: str,
        suffix: str,
        path: str | None,
        context: Sequence[Snippet],
        *,
        window_tokens: int | None = None,
    ) -> Layout:
        """The prompt for a cursor between `prefix` and `suffix` in the file at `path`,
        with `context` (snippets of other files, best first) as far as they fit.
        `window_tokens` narrows the window for this prompt (its context share with it)."""
        fmt = self.format
        window, context_tokens = self.window_tokens, self.context_tokens
        if window_tokens is not None and window_tokens < window:
            context_tokens = context_tokens * window_tokens // window
            window = window_tokens
        # Cut by characters first: nothing past what the window could hold is tokenized.
        prefix, first_line = cut_prefix_chars(prefix, window * MAX_CHARS_PER_TOKEN)
        held = held_whitespace(prefix)
        prefix = prefix[: len(prefix) - len(held)]
        suffix_budget = min(self.suffix_tokens, window // 4) if fmt.is_fim else 0
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
        budget = max(window - fixed, 16)
        prefix = clip_prefix(prefix, budget, self.count, first_line=first_line)
        prompt = build_prompt(fmt, prefix, suffix, path=path, context=snippets, repo=self.repo)
        return Layout(prompt, snippets, held)


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


def held_whitespace(prefix: str) -> str:
    """The whitespace at the end of `prefix`, which the prompt leaves out.

    BPE vocabularies merge whitespace with what follows it ("\n       ",
    " return"), so a prompt ending in whitespace leaves the model on tokens it
    rarely saw there: after "\n        " it writes " return", one column too
    far. The prompt ends before this whitespace; the model writes it, and
    `rejoin_held_whitespace` takes it off the start of the generated text.
    """
    return prefix[len(prefix.rstrip()) :]


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
