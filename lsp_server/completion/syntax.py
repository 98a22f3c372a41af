"""Is the cursor inside a comment or a string? Tree-sitter where a grammar exists, text otherwise.

Pure apart from the optional `tree-sitter-language-pack` (imported lazily; its
0.x releases ship every grammar inside the wheel, later ones download grammars
at run time, which an offline machine cannot do). A missing grammar, or a
parse that does not settle the question, falls back to a scan of the cursor's
line, which handles single-line strings and line comments.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from typing import Any, Literal

from lsp_server.completion.languages import Language

log = logging.getLogger(__name__)

# Parsing is linear in the file; beyond this the textual scan answers instead.
MAX_PARSE_BYTES = 512 * 1024
# Languages where a single quote does not always open a string (Rust lifetimes,
# Lisp quote, English apostrophes in Markdown).
_BLOCK_COMMENT_ENDS = ("*/", "-->", "-}", "]]")
_NO_SINGLE_QUOTE_STRINGS = {"rust", "markdown", "text", "html", "ocaml", "haskell"}


@dataclass(frozen=True)
class CursorSyntax:
    """Where the cursor stands, syntactically."""

    in_comment: bool = False
    in_string: bool = False
    source: Literal["tree-sitter", "text"] = "text"


@functools.lru_cache(maxsize=32)
def parser_for(grammar: str) -> Any | None:
    """A tree-sitter parser for `grammar`, or None where the package or the grammar is missing."""
    try:
        from tree_sitter_language_pack import get_parser
    except ImportError:
        return None
    try:
        return get_parser(grammar)  # type: ignore[arg-type]
    except Exception as exc:  # unknown grammar, or a release that wants to download it
        log.debug("no tree-sitter grammar for %s: %s", grammar, exc)
        return None


def cursor_syntax(prefix: str, suffix: str, language: Language | None) -> CursorSyntax:
    """Whether the cursor, between `prefix` and `suffix`, is inside a comment or a string."""
    text_answer = _textual(prefix, language)
    parser = parser_for(language.name) if language else None
    if parser is None or len(prefix) + len(suffix) > MAX_PARSE_BYTES:
        return text_answer
    try:
        tree_answer = _tree_sitter(parser, prefix, suffix)
    except Exception as exc:  # a parser bug must not cost the completion
        log.debug("tree-sitter failed: %s", exc)
        return text_answer
    # An unterminated string or comment the user is typing often parses as an
    # ERROR node; the line scan still sees it.
    return CursorSyntax(
        in_comment=tree_answer.in_comment or text_answer.in_comment,
        in_string=tree_answer.in_string or (text_answer.in_string and not tree_answer.in_comment),
        source="tree-sitter",
    )


def _tree_sitter(parser: Any, prefix: str, suffix: str) -> CursorSyntax:
    before = prefix.encode()
    tree = parser.parse(before + suffix.encode())
    at = len(before)
    node = tree.root_node.descendant_for_byte_range(max(at - 1, 0), at)
    while node is not None:
        kind = node.type
        # A line comment ends where its line does, so the cursor at its end is still in it.
        inside = at < node.end_byte or not prefix.rstrip().endswith(_BLOCK_COMMENT_ENDS)
        if "comment" in kind and node.start_byte < at and inside:
            return CursorSyntax(in_comment=True, source="tree-sitter")
        if _is_string(kind) and node.start_byte < at < node.end_byte:
            return CursorSyntax(in_string=True, source="tree-sitter")
        node = node.parent
    return CursorSyntax(source="tree-sitter")


def _is_string(kind: str) -> bool:
    return ("string" in kind or kind in ("char_literal", "rune_literal")) and not kind.endswith(
        ("_start", "_end")
    )


def _textual(prefix: str, language: Language | None) -> CursorSyntax:
    """Scan the cursor's line up to the cursor for an open quote or a line comment."""
    line = prefix.rsplit("\n", 1)[-1]
    quotes = '"`' if language and language.name in _NO_SINGLE_QUOTE_STRINGS else "\"'`"
    comment = language.line_comment if language else "#"
    open_quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if open_quote:
            if ch == "\\":
                i += 2
                continue
            if ch == open_quote:
                open_quote = ""
        elif comment and line.startswith(comment, i):
            return CursorSyntax(in_comment=True)
        elif ch in quotes:
            open_quote = ch
        i += 1
    return CursorSyntax(in_string=bool(open_quote))


def strip_line_comment(line: str, language: Language | None) -> str:
    """`line` without a trailing line comment (outside strings), e.g. to see a block opener."""
    comment = language.line_comment if language else "#"
    if not comment or comment not in line:
        return line
    open_quote = ""
    for i, ch in enumerate(line):
        if open_quote:
            if ch == open_quote and line[i - 1] != "\\":
                open_quote = ""
        elif line.startswith(comment, i):
            return line[:i]
        elif ch in "\"'`":
            open_quote = ch
    return line
