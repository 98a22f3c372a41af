"""Open documents and LSP positions: line/character in the negotiated encoding <-> offsets.

LSP counts lines by `\\n`, `\\r\\n` and `\\r` only (not the other breaks that
`str.splitlines` knows, such as form feed or U+2028) and characters in UTF-16
code units unless the client negotiated UTF-8 or UTF-32. Positions past the end
of a line or of the document are clamped, as the specification asks.

Pure: no pygls, no torch. Offsets are indexes into the Python string (code points).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import NamedTuple

LINE_BREAK = re.compile(r"\r\n|\r|\n")
SURROGATE = re.compile("[\ud800-\udfff]")
ENCODINGS = ("utf-8", "utf-16", "utf-32")


def units(text: str, encoding: str = "utf-16") -> int:
    """The length of `text` in the encoding's code units."""
    if encoding == "utf-32":
        return len(text)
    if encoding == "utf-8":
        return len(text.encode("utf-8", "surrogatepass"))
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def index_in_line(line: str, character: int, encoding: str = "utf-16") -> int:
    """The code point index of column `character` in `line`, clamped to the line's end.

    A column that falls inside a character (between the halves of a surrogate
    pair in UTF-16) stands before that character.
    """
    character = max(character, 0)
    if encoding == "utf-32" or units(line, encoding) == len(line):
        return min(character, len(line))
    used = 0
    for index, ch in enumerate(line):
        used += units(ch, encoding)
        if used > character:
            return index
    return len(line)


def line_bounds(text: str, line: int) -> tuple[int, int] | None:
    """Start and end (before its line break) of `line`, or None past the last line."""
    if line < 0:
        return None
    if line == 0:
        start = 0
    else:
        found = next(islice(LINE_BREAK.finditer(text), line - 1, None), None)
        if found is None:
            return None
        start = found.end()
    end = LINE_BREAK.search(text, start)
    return start, end.start() if end else len(text)


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """The offset of an LSP position; past the last line means the end of the document."""
    bounds = line_bounds(text, line)
    if bounds is None:
        return len(text)
    start, end = bounds
    return start + index_in_line(text[start:end], character, encoding)


class Position(NamedTuple):
    line: int
    character: int


def position_at(text: str, offset: int, encoding: str = "utf-16") -> Position:
    """The LSP position of `offset` (clamped to the document)."""
    offset = min(max(offset, 0), len(text))
    line, start = 0, 0
    for match in LINE_BREAK.finditer(text, 0, offset):
        line, start = line + 1, match.end()
    return Position(line, units(text[start:offset], encoding))


def apply_change(
    text: str, new_text: str, start: Position | None, end: Position | None, encoding: str
) -> str:
    """`text` with the range start..end replaced by `new_text` (the whole text if no range)."""
    if start is None or end is None:
        return new_text
    a = offset_at(text, start.line, start.character, encoding)
    b = offset_at(text, end.line, end.character, encoding)
    a, b = min(a, b), max(a, b)
    return text[:a] + new_text + text[b:]


WORD_END = re.compile(r"\w+$")


def word_start(text: str, offset: int) -> int:
    """The offset where the word (letters, digits, underscore) ending at `offset` starts."""
    line_start = max(text.rfind("\n", 0, offset), text.rfind("\r", 0, offset)) + 1
    match = WORD_END.search(text, line_start, offset)
    return match.start() if match else offset


class Replacement(NamedTuple):
    """An edit of `text[start:end]` into `new_text` (offsets into the document)."""

    start: int
    end: int
    new_text: str


def replacement(text: str, offset: int, completion: str) -> Replacement:
    """The edit that shows `completion` at `offset`: the word before the cursor, rewritten.

    Editors take an item without a range to replace the word before the cursor
    (VS Code drops one whose text does not start with that word), so the server
    says it: from the word's start to the cursor, with the word in the text. The
    item then also survives the user typing on through it. After a space or a
    bracket there is no word and the range is empty, at the cursor.
    """
    start = word_start(text, offset)
    return Replacement(start, offset, text[start:offset] + completion)


def prompt_safe(text: str) -> str:
    """`text` with lone surrogates (from a client's broken JSON) replaced, offsets unchanged."""
    return SURROGATE.sub("\ufffd", text) if SURROGATE.search(text) else text


def looks_binary(text: str) -> bool:
    return "\0" in text[:8192]


def uri_to_path(uri: str) -> str | None:
    """The file system path of a `file:` URI (percent-decoded, Windows drives too); else None."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    path = unquote(parsed.path)
    if len(path) >= 3 and path[0] == "/" and path[2] == ":":  # /C:/x -> C:/x
        path = path[1:]
    if parsed.netloc and parsed.netloc != "localhost":  # UNC: file://server/share
        path = f"//{parsed.netloc}{path}"
    return path or None


@dataclass
class Document:
    uri: str
    text: str
    version: int
    language_id: str = ""
    # Counts the edits the server applied; a request remembers it to notice edits made
    # while it ran (clients' own version numbers are not always trustworthy).
    revision: int = 0


class Change(NamedTuple):
    new_text: str
    start: Position | None = None
    end: Position | None = None


class Documents:
    """The open documents, kept in sync with the client's edits."""

    def __init__(self, encoding: str = "utf-16") -> None:
        self.encoding = encoding
        self._docs: dict[str, Document] = {}

    def __len__(self) -> int:
        return len(self._docs)

    def get(self, uri: str) -> Document | None:
        return self._docs.get(uri)

    def open(self, uri: str, text: str, version: int, language_id: str = "") -> None:
        self._docs[uri] = Document(uri, text, version, language_id)

    def change(self, uri: str, version: int, changes: Iterable[Change]) -> bool:
        """Apply `changes` in order; False for a document that is not open."""
        doc = self._docs.get(uri)
        if doc is None:
            return False
        text = doc.text
        for change in changes:
            text = apply_change(text, change.new_text, change.start, change.end, self.encoding)
        doc.text, doc.version, doc.revision = text, version, doc.revision + 1
        return True

    def close(self, uri: str) -> None:
        self._docs.pop(uri, None)
