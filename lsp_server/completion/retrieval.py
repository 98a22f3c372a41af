"""Cross-file context: which snippets of other files to show the model.

Pure (no torch, no pygls, no file I/O, no threads). A `ContextIndex` holds the
workspace's files cut into overlapping windows of lines, each reduced to its set
of identifiers, with an inverted index from identifier to windows. A query takes
the identifiers around the cursor and ranks windows by Jaccard similarity
(RepoCoder's measure), favouring open and recently edited documents, skipping
the current file and overlapping windows.

For the server::

    index = ContextIndex()
    index.update_document(path, text, is_open=True)  # didOpen / didChange (edited=True)
    index.close_document(path)                   # didClose: stays indexed from disk
    index.remove_document(path)                  # file deleted
    stable = StableContext(index)
    snippets = stable.get(text, offset, path)    # pass as Completer.complete(context=...)

The files on disk reach it from the workspace index's scanner
(`lsp_server.index.WorkspaceScanner`), which lists, reads and redacts them on a
thread of its own and hands each to `add_file`.

Paths are workspace-relative with forward slashes (absolute paths under
`root` are made relative; the caller resolves symlinks first), as they appear
in file headers in the prompt. All methods are thread-safe; the scanner takes
the lock once per file, so queries answer while a large workspace is being
indexed.

What the index holds may reach a prompt, so every document passes the secret
filter (`lsp_server.repo.secrets`) once, when indexed, as training data does
(the scanner redacts the files it reads). A document's text is stored once,
redacted, as one string; its windows are line ranges over it, and their
identifiers live only in the inverted index (arrays of window ids), so the
index takes ~4 bytes per byte of text where it took ~24.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

from lsp_server.completion.prompt import Snippet
from lsp_server.repo.secrets import redact

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Words in almost every file say nothing about which file is relevant.
STOPWORDS = frozenset(
    " ".join(
        (
            "self this def return if else elif for while in is not and or import from as",
            "class function const let var new true false none null nil int str string bool",
            "void public private static final package func fn pub use mut struct impl type",
            "interface export default async await try except catch finally raise throw with",
            "pass break continue the a an to of",
        )
    ).split()
)


@dataclass(frozen=True, slots=True)
class _Window:
    """A run of a document's lines. Its identifiers live in the postings alone (only their
    number is kept here): a set per window held each identifier again, 2x over with the
    overlap, and made the index ~24 bytes per byte of text (issue 28: 540 MB for 22 MB)."""

    path: str
    start: int  # first line, 0-based
    end: int  # one past the last line
    tokens: int  # how many distinct identifiers it holds


# Postings are arrays: a window id takes 8 bytes there, against ~60 in a set. Dropped
# windows stay in the postings (skipped when scoring) until there are this many and as
# many as live ones; then the postings are rebuilt without them.
_COMPACT_AFTER = 10_000


@dataclass
class _Doc:
    windows: list[int]
    signature: tuple[int, int] | None  # (mtime_ns, size) for files read from disk
    is_open: bool = False
    edited_at: float = 0.0  # time.monotonic() of the last edit, 0.0 if none
    # The redacted text, stored once as one string (a list of lines cost twice the text),
    # and where each line starts in it (one more: where a line after the last would).
    text: str = ""
    starts: array[int] = field(default_factory=lambda: array("q", [0]))
    # Open documents: each raw line's redacted form, so an edit redacts only new lines.
    redacted: dict[str, str] = field(default_factory=dict)


def identifiers(text: str) -> set[str]:
    """The identifiers in `text` that can tell files apart (no keywords, no one-letter names)."""
    return {t for t in IDENTIFIER.findall(text) if len(t) > 1 and t.lower() not in STOPWORDS}


class ContextIndex:
    """An incremental, thread-safe index of workspace files for snippet retrieval."""

    def __init__(
        self,
        *,
        window_lines: int = 20,
        stride: int = 10,
        max_file_bytes: int = 512 * 1024,
        recent_seconds: float = 600.0,
    ) -> None:
        self.window_lines = window_lines
        self.stride = stride
        self.max_file_bytes = max_file_bytes
        self.recent_seconds = recent_seconds
        self.root: Path | None = None  # resolved by whoever sets it
        self._lock = threading.Lock()
        self._docs: dict[str, _Doc] = {}
        self._windows: dict[int, _Window] = {}
        # identifier -> the ids of the windows holding it, in insertion order; ids of
        # dropped windows linger until `_compact` (see `_COMPACT_AFTER`).
        self._postings: dict[str, array[int]] = {}
        self._dead = 0  # dropped window ids still in the postings
        self._next_id = 0

    # --- documents ------------------------------------------------------------

    def update_document(
        self, path: str, text: str, *, is_open: bool = False, edited: bool = False
    ) -> None:
        """Add or replace a document's text; `edited` marks it recently edited (ranked higher)."""
        key = self._key(path)
        with self._lock:
            old = self._docs.get(key)
            cache = old.redacted if old is not None else {}
        lines, redacted = _redact_lines(key, text, cache)
        windows = self._cut(key, lines)
        with self._lock:
            old = self._docs.get(key)
            self._drop(key)
            doc = _Doc([], None, is_open or bool(old and old.is_open), old.edited_at if old else 0)
            if edited:
                doc.edited_at = time.monotonic()
            doc.redacted = redacted if doc.is_open else {}  # only an open one is edited
            self._insert(key, doc, windows, lines)

    add_document = update_document

    def close_document(self, path: str) -> None:
        """The editor closed it: it stays indexed, without the open documents' preference."""
        with self._lock:
            doc = self._docs.get(self._key(path))
            if doc:
                doc.is_open = False

    def remove_document(self, path: str) -> None:
        """Forget a document (e.g. the file was deleted)."""
        with self._lock:
            self._drop(self._key(path))

    def __len__(self) -> int:
        """The number of documents indexed."""
        return len(self._docs)

    def __contains__(self, path: str) -> bool:
        return self._key(path) in self._docs

    # --- files read from disk (by lsp_server.index's scanner) --------------------

    def wants(self, path: str, signature: tuple[int, int]) -> bool:
        """False when the file at `path` is indexed with this `signature` (mtime_ns,
        size) already, or open in the editor (whose text is newer than the disk's)."""
        with self._lock:
            doc = self._docs.get(path)
            return doc is None or not (doc.is_open or doc.signature == signature)

    def add_file(
        self, path: str, lines: list[str], signature: tuple[int, int], stop: threading.Event
    ) -> None:
        """Index a file as read from disk, its `lines` already redacted; not when `stop`
        is set (a newer scan owns the index) or the editor has it open (its text wins)."""
        windows = self._cut(path, lines)
        with self._lock:
            doc = self._docs.get(path)
            if stop.is_set() or (doc is not None and doc.is_open):
                return
            self._drop(path)
            self._insert(path, _Doc([], signature), windows, lines)

    def keep_files(self, listed: set[str], stop: threading.Event) -> None:
        """Forget the files read from disk that are not `listed` any more (documents the
        editor sent stay); nothing when `stop` is set."""
        with self._lock:
            if stop.is_set():
                return
            for gone in [k for k, d in self._docs.items() if d.signature and k not in listed]:
                self._drop(gone)

    # --- queries --------------------------------------------------------------

    def query(
        self,
        text: str,
        offset: int,
        *,
        path: str | None = None,
        limit: int = 8,
        lines_before: int = 15,
        lines_after: int = 3,
    ) -> list[Snippet]:
        """Snippets of other files most like the code around `offset` in `text`, best first."""
        before = text[:offset].split("\n")[-lines_before:]
        after = text[offset:].split("\n")[:lines_after]
        wanted = identifiers("\n".join(before + after))
        if not wanted:
            return []
        current = self._key(path) if path else None
        now = time.monotonic()
        with self._lock:
            scored = self._score(wanted, current, now)
            picked: list[tuple[_Window, str]] = []
            for _, wid in scored:
                w = self._windows[wid]
                text = self._text(w)
                if any(_overlaps(w, p) or text == t for p, t in picked):
                    continue
                picked.append((w, text))
                if len(picked) >= limit:
                    break
        return [Snippet(w.path, text) for w, text in picked]

    def _score(self, wanted: set[str], current: str | None, now: float) -> list[tuple[float, int]]:
        # Rare identifiers first: they find the relevant windows, and common ones
        # are cut off once enough candidates are in hand.
        hits: dict[int, int] = {}
        budget = 50_000
        for token in sorted(wanted, key=lambda t: len(self._postings.get(t, ()))):
            posting = self._postings.get(token)
            if not posting:
                continue
            if len(posting) > budget:
                break
            budget -= len(posting)
            live = self._windows
            for wid in posting:
                if wid in live:  # not a dropped window's id, still in the posting
                    hits[wid] = hits.get(wid, 0) + 1
        best = sorted(hits.items(), key=lambda kv: -kv[1])[:500]
        scored = []
        for wid, shared in best:
            w = self._windows[wid]
            if w.path == current:
                continue
            score = shared / (len(wanted) + w.tokens - shared)
            doc = self._docs[w.path]
            if doc.is_open:
                score *= 1.25
            if doc.edited_at and now - doc.edited_at < self.recent_seconds:
                score *= 1.25
            scored.append((score, wid))
        scored.sort(key=lambda sw: (-sw[0], sw[1]))
        return scored

    # --- internals (call with the lock held where noted) ------------------------

    def _key(self, path: str) -> str:
        p = PurePath(path)
        if p.is_absolute() and self.root is not None:
            with contextlib.suppress(ValueError):  # outside the workspace: keep it absolute
                p = p.relative_to(self.root)
        return p.as_posix()

    def _text(self, w: _Window) -> str:
        """(lock held) A window's text, from its document's lines."""
        doc = self._docs[w.path]
        return doc.text[doc.starts[w.start] : doc.starts[w.end] - 1]

    def _cut(self, key: str, lines: list[str]) -> list[tuple[_Window, set[str]]]:
        """Overlapping windows of `window_lines` lines, every `stride` lines, each with
        its identifiers."""
        starts = list(range(0, max(len(lines) - self.window_lines, 0) + 1, self.stride))
        tail = len(lines) - self.window_lines
        if tail > 0 and tail % self.stride:  # the last lines, when the stride skips them
            starts.append(tail)
        out = []
        for start in starts:
            end = min(start + self.window_lines, len(lines))
            tokens = identifiers("\n".join(lines[start:end]))
            if tokens:
                out.append((_Window(key, start, end, len(tokens)), tokens))
        return out

    def _insert(
        self, key: str, doc: _Doc, windows: list[tuple[_Window, set[str]]], lines: list[str]
    ) -> None:
        """(lock held)"""
        doc.text = "\n".join(lines)
        doc.starts = array("q", [0])
        for line in lines:
            doc.starts.append(doc.starts[-1] + len(line) + 1)
        for w, tokens in windows:
            wid = self._next_id
            self._next_id += 1
            self._windows[wid] = w
            doc.windows.append(wid)
            for t in tokens:
                posting = self._postings.get(t)
                if posting is None:
                    posting = self._postings[t] = array("q")
                posting.append(wid)
        self._docs[key] = doc

    def _drop(self, key: str) -> None:
        """(lock held) Forget a document; its window ids leave the postings at the next
        compaction."""
        doc = self._docs.pop(key, None)
        if doc is None:
            return
        for wid in doc.windows:
            del self._windows[wid]
        self._dead += len(doc.windows)
        if self._dead >= max(_COMPACT_AFTER, len(self._windows)):
            self._compact()

    def _compact(self) -> None:
        """(lock held) Rebuild the postings without the ids of dropped windows."""
        live = self._windows
        for token in list(self._postings):
            kept = array("q", (wid for wid in self._postings[token] if wid in live))
            if kept:
                self._postings[token] = kept
            else:
                del self._postings[token]
        self._dead = 0


def _overlaps(a: _Window, b: _Window) -> bool:
    return a.path == b.path and a.start < b.end and b.start < a.end


_REDACT_CACHE_LINES = 20_000


def _redact_lines(path: str, text: str, cache: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The text's lines with secrets removed, and the raw-to-redacted map of its lines.

    Lines already in `cache` (the document's previous version) are not redacted
    again, so an edit costs only its new lines. A private-key block spans lines:
    text holding one is redacted whole.
    """
    if "PRIVATE KEY" in text:
        return redact(text, path)[0].split("\n"), {}
    lines = text.split("\n")
    out: dict[str, str] = {}
    for line in lines:
        if line not in out:
            clean = cache.get(line)
            out[line] = clean if clean is not None else redact(line, path)[0]
    clean_lines = [out[line] for line in lines]
    return clean_lines, out if len(out) <= _REDACT_CACHE_LINES else {}


class StableContext:
    """The same snippets for a cursor while it stays in one region of a file.

    Re-ranking on every keystroke would change the start of the prompt and
    defeat the KV prefix cache; so a query is re-run only when the cursor moves
    to another block of `region_lines` lines or another file, or `max_age`
    seconds have passed.
    """

    def __init__(self, index: ContextIndex, *, region_lines: int = 16, max_age: float = 60.0):
        self.index = index
        self.region_lines = region_lines
        self.max_age = max_age
        self._key: tuple[str | None, int] | None = None
        self._at = 0.0
        self._snippets: list[Snippet] = []

    def get(self, text: str, offset: int, path: str | None = None, **kw: Any) -> list[Snippet]:
        """Snippets for the cursor at `offset` in `text` (see `ContextIndex.query`)."""
        key = (path, text.count("\n", 0, offset) // self.region_lines)
        now = time.monotonic()
        if key != self._key or now - self._at > self.max_age:
            self._snippets = self.index.query(text, offset, path=path, **kw)
            self._key, self._at = key, now
        return list(self._snippets)
