"""Turn what the model generated into what the editor should show.

Pure text rules, each a small function, applied in order by `postprocess`:

- `scope`: one line, or a block body cut where it dedents below the block;
- `repetition`: cut a completion where it starts looping, drop an echo of the line above;
- `indentation`: tabs or spaces as the document uses them;
- `brackets`: never close a bracket or quote that the text after the cursor closes;
- `overlap`: cut lines the suffix already has next, and drop what it already holds;
- `whitespace`: trim trailing whitespace, drop whitespace-only completions.

`rules` switches rules off one by one (benchmarks and before/after comparisons).
Whatever the rules, the result is never text that the suffix already starts
with at the cursor.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection

from lsp_server.completion.scope import Scope, indent_width

RULES = ("scope", "repetition", "indentation", "brackets", "overlap", "whitespace")
OPENERS = {"(": ")", "[": "]", "{": "}"}
OPENER_OF = {v: k for k, v in OPENERS.items()}
QUOTES = "\"'`"
# A unit of 3+ characters repeated 3+ times in a row within one line ("a, a, a, a").
_LOOP = re.compile(r"(.{3,}?)\1{2,}")


def postprocess(
    text: str, prefix: str, suffix: str, scope: Scope, *, rules: Collection[str] = RULES
) -> str:
    """The completion to show for `text` generated between `prefix` and `suffix`."""
    for rule, step in rule_steps(prefix, suffix, scope):
        if rule in rules:
            text = step(text)
    return _not_in_suffix(text, suffix)


def rule_steps(prefix: str, suffix: str, scope: Scope) -> list[tuple[str, Callable[[str], str]]]:
    """The post-processing rules in the order `postprocess` applies them, each as
    (its name in RULES, the step on the text) for this cursor."""
    return [
        ("scope", scope.finish),
        ("repetition", lambda t: cut_repetition(t, prefix)),
        (
            "indentation",
            lambda t: match_indentation(
                t, prefix, suffix, first_line_indented=not scope.line_start
            ),
        ),
        ("brackets", lambda t: balance_brackets(t, prefix, suffix)),
        (
            "overlap",
            lambda t: remove_suffix_overlap(
                t, suffix, whole_first_line=not scope.line_start.strip()
            ),
        ),
        ("whitespace", trim_whitespace),
    ]


def trim_whitespace(text: str) -> str:
    """Trailing whitespace off every line, no trailing blank lines; '' if nothing but blanks."""
    if not text.strip():
        return ""
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def cut_repetition(text: str, prefix: str) -> str:
    """Cut where the completion starts to loop; '' when it only repeats the line above.

    Small models fall into loops: the same line again and again, or a phrase
    repeated within a line. Only lines with some substance count, so closing
    brackets and blank lines may repeat.
    """
    lines = text.split("\n")
    line_start = prefix.rsplit("\n", 1)[-1]
    above = _previous_nonblank(prefix)
    first = (line_start + lines[0]).strip()
    if above is not None and _substantial(first) and first == above.strip():
        return ""  # an echo of the line above, e.g. a second `import os`
    for i, line in enumerate(lines):
        loop = _LOOP.search(line)
        if loop and any(ch.isalnum() for ch in loop.group(1)):
            if i:  # a later line that loops is garbage as a whole
                return "\n".join(lines[:i])
            # On the first line keep the first occurrence of the unit, cut at a word's end.
            end = loop.start() + len(loop.group(1))
            while 0 < end < len(line) and _word(line[end - 1]) and _word(line[end]):
                end -= 1
            return line[:end]
        recent = [prev.strip() for prev in lines[max(0, i - 4) : i]]
        if i and _substantial(line) and line.strip() in recent:
            return "\n".join(lines[:i])
    return text


def match_indentation(text: str, prefix: str, suffix: str, *, first_line_indented: bool) -> str:
    """Re-indent the completion with tabs or spaces, whichever the document uses.

    The first line continues the cursor's line, so its leading whitespace is
    indentation only when the cursor stands at the start of the line.
    """
    style = indent_style(prefix + suffix)
    if style is None or ("\n" not in text and not first_line_indented):
        return text
    lines = text.split("\n")
    start = 0 if first_line_indented else 1
    own_unit = _space_unit(lines[start:]) or 4
    for i in range(start, len(lines)):
        body = lines[i].lstrip(" \t")
        indent = lines[i][: len(lines[i]) - len(body)]
        if style == "\t" and " " in indent:
            lines[i] = "\t" * (indent_width(indent, own_unit) // own_unit) + body
        elif style != "\t" and "\t" in indent:
            lines[i] = " " * indent_width(indent, len(style)) + body
    return "\n".join(lines)


def indent_style(text: str) -> str | None:
    """'\\t' if the document indents with tabs, else the unit of spaces; None if it does not say."""
    tabs = spaces = 0
    widths: list[int] = []
    for line in text.split("\n"):
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith(" ") and line.strip():
            spaces += 1
            widths.append(len(line) - len(line.lstrip(" ")))
    if not tabs and not spaces:
        return None
    if tabs > spaces:
        return "\t"
    return " " * (_space_unit_of(widths) or 4)


def balance_brackets(text: str, prefix: str, suffix: str) -> str:
    """Drop closing brackets and quotes at the end of `text` that the rest of the line already has.

    Only closers that close something opened before the cursor count: in
    `print(f(|))` a completion `x))` becomes `x`, but `g()` stays `g()`.
    Trailing `;` or `,` after such closers go with them, since the suffix's
    closers now end the expression.
    """
    rest = suffix.split("\n", 1)[0]
    run = re.match(r"[)\]}\"'`]*", rest)
    closers = run.group(0) if run else ""
    if not closers or not text:
        return text
    body = text.rstrip(" \t;,")
    excess = _excess_closers(body, prefix)
    for k in range(min(len(closers), len(body)), 0, -1):
        tail = range(len(body) - k, len(body))
        if body.endswith(closers[:k]) and all(i in excess for i in tail):
            return body[:-k]
    return text


def remove_suffix_overlap(text: str, suffix: str, *, whole_first_line: bool = False) -> str:
    """Cut the completion where it re-types what follows the cursor.

    On one line: the completion ends with the rest of the line (`x, y)` before
    `, y)`), or starts re-typing it with changes (then nothing is left). Over
    lines: from the first completion line that starts re-typing the suffix's
    next non-blank lines. The first line counts too when it is a whole line
    (`whole_first_line`: the cursor's line was blank).
    """
    rest = suffix.split("\n", 1)[0].strip()
    lines = text.split("\n")
    if rest and not set(rest) <= set(")]}\"'`;,"):
        if lines[-1].rstrip().endswith(rest):
            lines[-1] = lines[-1].rstrip()[: -len(rest)]
            text = "\n".join(lines)
        elif _common_prefix(lines[0].lstrip(), rest) >= min(len(rest), 8):
            # The model re-types the rest of the line with changes (`url, data=data,
            # json=json, **kwargs)` before `url, data=data, **kwargs)`): no insertion
            # at the cursor gives that, and showing it would double the line.
            return ""
    following = [line.strip() for line in suffix.split("\n")[1:] if line.strip()]
    if following:
        for i in range(0 if whole_first_line else 1, len(lines)):
            if _repeats(lines[i:], following):
                text = "\n".join(lines[:i])
                break
    return text


def _repeats(lines: list[str], following: list[str]) -> bool:
    """True if `lines` (non-blank ones) start by re-typing the suffix's next lines, substantially.

    What comes after the re-typed lines is an alternative to the code already
    there, so it goes too.
    """
    mine = [line.strip() for line in lines if line.strip()]
    matched = 0
    for a, b in zip(mine, following, strict=False):
        if a != b:
            break
        matched += 1
    # One closing brace matching is a coincidence; a statement or two lines are not.
    return matched >= 2 or (matched == 1 and _substantial(mine[0]))


def _common_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def _not_in_suffix(text: str, suffix: str) -> str:
    """'' if the suffix already starts with the completion (ignoring surrounding whitespace)."""
    core = text.strip()
    if core and suffix.lstrip().startswith(core):
        return ""
    return text


def _excess_closers(text: str, prefix: str) -> set[int]:
    """Positions in `text` of closers that close something opened before the completion."""
    excess: set[int] = set()
    stack: list[str] = []
    quote = _open_quote(prefix.rsplit("\n", 1)[-1])
    outer_quote = quote  # the string the cursor is in, opened in the prefix
    for i, ch in enumerate(text):
        if quote:
            if ch == quote and (i == 0 or text[i - 1] != "\\"):
                if quote == outer_quote and not stack:
                    excess.add(i)
                    outer_quote = ""
                quote = ""
            continue
        if ch in QUOTES:
            quote = ch
        elif ch in OPENERS:
            stack.append(ch)
        elif ch in OPENER_OF:
            if stack and stack[-1] == OPENER_OF[ch]:
                stack.pop()
            elif not stack:
                excess.add(i)
    return excess


def _open_quote(line: str) -> str:
    """The quote character of a string left open on `line`, or ''."""
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
        i += 1
    return quote


def _word(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


def _substantial(line: str) -> bool:
    return sum(ch.isalnum() for ch in line) >= 2


def _previous_nonblank(prefix: str) -> str | None:
    for line in reversed(prefix.split("\n")[:-1]):
        if line.strip():
            return line
    return None


def _space_unit(lines: list[str]) -> int:
    widths = [len(line) - len(line.lstrip(" ")) for line in lines if line.startswith(" ")]
    return _space_unit_of(widths)


def _space_unit_of(widths: list[int]) -> int:
    """The indentation unit: the smallest common step among space indents (2, 4 or 8)."""
    widths = [w for w in widths if w]
    if not widths:
        return 0
    for unit in (8, 4, 3, 2):
        if sum(w % unit == 0 for w in widths) >= 0.9 * len(widths):
            return unit
    return min(widths)
