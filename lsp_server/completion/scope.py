"""How much to complete at the cursor, when to stop generating, and how to trim the result.

Pure text logic (no torch, no pygls), shared by the command line and the server:
- `decide_scope` picks one line or a block body from the text around the cursor;
- `Scope.should_stop` tells the engine, from the text generated so far, to stop;
- `Scope.finish` cuts the generated text down to what the scope allows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lsp_server.completion.languages import Language
from lsp_server.completion.syntax import cursor_syntax, strip_line_comment

Mode = Literal["auto", "line", "block"]
BLOCK_OPENERS = (":", "{", "(", "[", "=>", "->")
# Text after the cursor that still lets a completion run to the end of the line:
# closing brackets and quotes the editor inserted, and statement punctuation.
CLOSING_CHARS = set(")]}>\"'`;,: \t")
# More characters than this right of the cursor on its line, closers aside, and
# no completion helps there: the request is answered at once (llama.vim's
# `max_line_suffix` is 8 too). Up to it, `decide_scope` completes one line ("mid-line").
MAX_LINE_SUFFIX = 8


def completion_helps(suffix: str) -> bool:
    """False when the rest of the cursor's line (the start of `suffix`) leaves no room for one."""
    rest_of_line = suffix.split("\n", 1)[0].rstrip("\r")
    return sum(ch not in CLOSING_CHARS for ch in rest_of_line) <= MAX_LINE_SUFFIX


def indent_width(line: str, tab_size: int = 4) -> int:
    width = 0
    for ch in line:
        if ch == " ":
            width += 1
        elif ch == "\t":
            width += tab_size - width % tab_size
        else:
            break
    return width


@dataclass(frozen=True)
class Scope:
    """One line, or a block body: lines indented deeper than `block_indent` columns."""

    multiline: bool
    block_indent: int = 0
    # Text already on the cursor's line before the cursor; the first generated
    # line continues it, so its indentation counts towards that line's.
    line_start: str = ""
    # Why this scope was chosen, for logs and `--json`.
    reason: str = ""

    def should_stop(self, text: str) -> bool:
        """True once `text` holds everything this scope can use (checked after each token)."""
        if not self.multiline:
            return "\n" in text
        return self._dedent_at(text) is not None

    def finish(self, text: str) -> str:
        """The completion to show: cut at the scope's end, without trailing whitespace."""
        if not self.multiline:
            return text.split("\n", 1)[0].rstrip()
        cut = self._dedent_at(text)
        if cut is not None:
            text = text[:cut]
        lines = [line.rstrip() for line in text.split("\n")]
        while len(lines) > 1 and not lines[-1]:
            lines.pop()
        return "\n".join(lines) if any(lines) else ""

    def _dedent_at(self, text: str) -> int | None:
        """Offset of the newline before the first line that leaves the block, if any."""
        offset = text.find("\n")
        while offset != -1:
            nxt = text.find("\n", offset + 1)
            line = text[offset + 1 : nxt if nxt != -1 else len(text)]
            if line.strip() and indent_width(line) <= self.block_indent:
                return offset
            offset = nxt
        return None


def decide_scope(
    prefix: str, suffix: str, mode: Mode = "auto", *, language: Language | None = None
) -> Scope:
    """One line or a block body, from the text around the cursor.

    A block when the cursor is on an empty line just after a block opener
    (`def f():`, `if (x) {`), at the end of such a line, or right after an
    opener whose closer is all that follows on the line (`{|}`). One line
    otherwise: in a comment or a string, mid-line, or after text on the line.
    `language` lets tree-sitter judge comments and strings; without it a scan
    of the line does. `mode` "line" or
    "block" forces the choice; in a forced block, the block is the one the
    cursor's line is indented into.
    """
    line_start = prefix.rsplit("\n", 1)[-1]
    rest_of_line = suffix.split("\n", 1)[0]
    if mode == "line":
        return Scope(multiline=False, line_start=line_start, reason="forced")
    if mode == "block":
        return _block_scope(prefix, line_start, language, reason="forced")
    syntax = cursor_syntax(prefix, suffix, language)
    if syntax.in_comment or syntax.in_string:
        where = "comment" if syntax.in_comment else "string"
        return Scope(multiline=False, line_start=line_start, reason=f"in {where}")
    if not set(rest_of_line) <= CLOSING_CHARS:
        return Scope(multiline=False, line_start=line_start, reason="mid-line")
    stripped = line_start.rstrip()
    if stripped.endswith("{") and rest_of_line.strip().startswith("}"):
        # `function f() {|}`: the body goes between the braces, on new lines.
        # (`foo(|)` stays one line: arguments rarely span lines.)
        indent = indent_width(line_start)
        return Scope(True, block_indent=indent, line_start=line_start, reason="inside brackets")
    code = strip_line_comment(line_start, language).rstrip()
    if code.endswith((":", "{")) and not rest_of_line.strip():
        # `def f(x):|` or `if (x) {|`: the body follows on new lines. (A line
        # ending in `(` or `[` continues on one line: arguments, not a block.)
        indent = indent_width(line_start)
        return Scope(True, block_indent=indent, line_start=line_start, reason="after block opener")
    if line_start.strip() or rest_of_line.strip():
        return Scope(multiline=False, line_start=line_start, reason="end of line")
    return _block_scope(prefix, line_start, language, reason="")


def _block_scope(prefix: str, line_start: str, language: Language | None, reason: str) -> Scope:
    """A block scope when the line above opens a block; else one line, unless `reason` forces."""
    above = _previous_nonblank_line(prefix)
    code_above = strip_line_comment(above, language).rstrip() if above is not None else ""
    opener = above is not None and code_above.endswith(BLOCK_OPENERS)
    if not opener and not reason:
        return Scope(multiline=False, line_start=line_start, reason="no block opener above")
    if opener and above is not None:
        indent = indent_width(above)
    elif line_start.strip():
        indent = indent_width(line_start) - 1  # keep lines at least as deep as this one
    else:
        indent = max(indent_width(line_start) - 1, -1)
    return Scope(True, block_indent=indent, line_start=line_start, reason=reason or "block opener")


def _previous_nonblank_line(prefix: str) -> str | None:
    lines = prefix.split("\n")[:-1]  # the last piece is the cursor's own line
    for line in reversed(lines):
        if line.strip():
            return line
    return None
