"""Where a repository's filter lives on disk, its one writer, and the server's reloading reader.

A repository's filter is `quiet.json` in its Codetailor folder under the cache home,
beside its feedback log (`$CODETAILOR_HOME/feedback/<repo key>/quiet.json`, the key of
`lsp_server.feedback.log.repo_key`): learned from that log, kept with it, removed with it
by `codetailor feedback clear`. Written whole to a temporary file and renamed, so a
reader never sees half of one.

The file holds a filter per kind of suggestion learned (completions, next edits; see
`lsp_server.quiet.filter.QuietFilters`). `FilterFile` is the session's `QuietSourceLike`:
`current(kind)` is the repository's filter of that kind, its global rule while it has
none, or None (serve unfiltered, both kinds) when the file is there but refused (corrupt,
another format, a newer version): then one line is logged, once per file version. It
looks at the file's modification time at most once per `RELOAD_S`, so a filter that
`feedback learn` (or `finetune --feedback`) writes takes effect within that while the
server runs, and a request costs one `stat` now and then, never a parse.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.feedback.log import feedback_dir
from lsp_server.quiet.filter import QuietFilter, QuietFilters, Suggestions

log = logging.getLogger("codetailor.quiet")

FILTER = "quiet.json"
RELOAD_S = 2.0


def filter_path(root: str | Path, home: Path) -> Path:
    """Where the filter of the repository at `root` lives under the cache home `home`."""
    return feedback_dir(root, home) / FILTER


def write_filter(path: Path, quiet: QuietFilter | QuietFilters) -> None:
    """Store `quiet` (one filter, or one per kind) at `path`, atomically (the server may be
    reading it)."""
    filters = QuietFilters.of(quiet) if isinstance(quiet, QuietFilter) else quiet
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    part.write_text(filters.to_json() + "\n", encoding="utf-8")
    os.replace(part, path)


def read_filter(path: Path) -> QuietFilters:
    """The filters stored at `path`; CodetailorError with one line when they are refused."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise CodetailorError(f"cannot read the quiet filter {path}: {exc.strerror}") from None
    try:
        return QuietFilters.from_json(text)
    except ValueError as exc:
        raise CodetailorError(f"quiet filter {path} refused: {exc}") from None


class FilterFile:
    """The filter of the workspace's repository, reloaded when its file changes."""

    def __init__(self, home: Path | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.home = home
        self.clock = clock
        self.path: Path | None = None
        self._filters: QuietFilters | None = QuietFilters()  # None: refused
        self._stamp: tuple[int, int] | None = None  # (mtime_ns, size) of what was read
        self._looked = float("-inf")
        self.problem: str | None = None  # why the file was refused, if it was

    def start(self, root: Path | None) -> None:
        """Serve the filter of the repository at `root` (None: the global rule only)."""
        if self.home is not None and root is not None:
            self.path = filter_path(root, self.home)
            self._looked = float("-inf")

    def current(self, suggestions: Suggestions = "completion") -> QuietFilter | None:
        """The filter to apply now to `suggestions`: the repository's, their global rule
        while it has none, None when its file is refused (serve unfiltered)."""
        now = self.clock()
        if self.path is not None and now - self._looked >= RELOAD_S:
            self._looked = now
            self._reload(self.path)
        return None if self._filters is None else self._filters.for_(suggestions)

    def _reload(self, path: Path) -> None:
        try:
            st = path.stat()
        except OSError:
            self._filters, self._stamp, self.problem = QuietFilters(), None, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            self._filters, self.problem = read_filter(path), None
            log.info("quiet filter loaded from %s", path)
        except CodetailorError as exc:
            self._filters, self.problem = None, str(exc)
            log.warning("%s; serving unfiltered", exc)

    def status(self) -> dict[str, Any]:
        """For `codetailor.status`: which filter applies to completions (`filter`) and to
        next edits (`nextEditFilter`), from where, and why none does."""
        filters = self._filters
        out: dict[str, Any] = {"path": str(self.path) if self.path else None}
        keys: tuple[tuple[Suggestions, str], ...] = (
            ("completion", "filter"),
            ("next_edit", "nextEditFilter"),
        )
        for kind, key in keys:
            quiet = None if filters is None else filters.for_(kind)
            out[key] = "none (refused)" if quiet is None else quiet.name
            if quiet is not None and quiet.learned.get("learner"):
                out["learner" if kind == "completion" else "nextEditLearner"] = quiet.learned[
                    "learner"
                ]
        if self.problem:
            out["problem"] = self.problem
        return out
