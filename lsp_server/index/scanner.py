"""The workspace scanner: lists, reads and redacts a root's files into a `ContextIndex`.

For the server::

    scanner = WorkspaceScanner(ContextIndex())
    scanner.scan(root)          # a background thread; returns at once
    scanner.progress            # (files done, files listed)
    scanner.stop()              # tell it to stop; never waits
    scanner.wait(timeout)       # wait for it, bounded (tests, tools)

A scan indexes the files under the root that git does not ignore; a later scan
only what changed (each file's mtime and size), and it forgets the files that
are gone. Open documents keep their editor text. What the index holds may reach
a prompt, so it is read safely: only regular files inside the root (the
repository lister's rules: no symlink, pipe or device, a byte bound on every
read), and each file passes the secret filter (`lsp_server.repo.secrets`) before
the index sees it, as training data does. Stopping or restarting a scan never
waits for it: each scan has its own stop flag and an old scan's results are
dropped.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from lsp_server.completion.retrieval import ContextIndex
from lsp_server.repo.files import is_regular_file, list_files, read_text, skip_reason_for_path
from lsp_server.repo.secrets import redact

log = logging.getLogger(__name__)


class WorkspaceScanner:
    """Feeds `index` the files of a workspace root, on a daemon thread of its own; answers
    where paths lead on disk."""

    def __init__(self, index: ContextIndex | None = None, *, max_files: int = 50_000) -> None:
        self.index = index if index is not None else ContextIndex()
        self.max_files = max_files
        self.progress = (0, 0)  # (files done, files listed) of the current scan
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()  # the current scan's; each scan gets a new one

    # --- paths on disk ----------------------------------------------------------

    def folder(self, path: str) -> Path | None:
        """`path` resolved when it is a folder; None otherwise (also for a name the file
        system cannot take: a NUL, a part too long)."""
        try:
            return Path(path).resolve() if Path(path).is_dir() else None
        except (OSError, ValueError):
            return None

    def locate(self, path: str) -> Path | None:
        """Where `path` really is: made absolute, symlinks resolved; None for a name the
        file system cannot take."""
        try:
            return Path(path).resolve()
        except (OSError, ValueError):
            return None

    # --- scans ------------------------------------------------------------------

    def scan(self, root: str | Path, *, background: bool = True) -> None:
        """Index the files under `root` that git does not ignore; again later, only what changed.

        Runs on a daemon thread unless `background` is False; a scan already
        running is told to stop, without waiting for it (it may be inside a
        slow `git ls-files`): what it finds afterwards is dropped. The index
        takes `root`, resolved, as its own.
        """
        self.stop()
        self.index.root = resolved = Path(root).resolve()
        stop = self._stop = threading.Event()
        if not background:
            self._scan(resolved, stop)
            return
        self._thread = threading.Thread(
            target=self._scan, args=(resolved, stop), name="codetailor-index", daemon=True
        )
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the background scan; True when it has finished."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def stop(self) -> None:
        """Tell a background scan to stop, without waiting (what it indexed so far stays).

        Safe on the event loop: it never joins the scan's thread, which may be
        inside a slow listing; use `wait(timeout)` to wait, bounded.
        """
        self._stop.set()

    def _scan(self, root: Path, stop: threading.Event) -> None:
        started = time.monotonic()
        try:
            paths = indexable_files(root)[: self.max_files]
        except OSError as exc:
            log.warning("cannot list %s: %s", root, exc)
            return
        if stop.is_set():
            return
        self.progress = (0, len(paths))
        for done, rel in enumerate(paths, 1):
            if stop.is_set():
                return
            self._index_file(root, rel, stop)
            self.progress = (done, len(paths))
            time.sleep(0)  # let a query thread take the interpreter between files
        self.index.keep_files(set(paths), stop)
        if not stop.is_set():
            log.info("indexed %d files in %.1f s", len(paths), time.monotonic() - started)

    def _index_file(self, root: Path, rel: str, stop: threading.Event) -> None:
        path = root / rel
        if not _inside(root, path) or not is_regular_file(path):
            return  # through a symlinked folder, or not a regular file (any more)
        try:
            st = os.lstat(path)
        except OSError:
            return
        signature = (st.st_mtime_ns, st.st_size)
        if not self.index.wants(rel, signature):
            return  # unchanged, or the editor's text is newer than the disk's
        text, _ = read_text(path, self.index.max_file_bytes)  # regular files only, bounded
        if text is None:
            return
        lines = redact(text, rel)[0].split("\n")  # before anything else sees the text
        self.index.add_file(rel, lines, signature, stop)


def _inside(root: Path, path: Path) -> bool:
    """True when `path`, symlinks resolved, is inside `root` (itself resolved)."""
    try:
        Path(os.path.realpath(path)).relative_to(root)
    except ValueError:
        return False
    return True


def indexable_files(root: Path) -> list[str]:
    """The workspace files worth indexing: the repository lister's, less what is not source."""
    return [p for p in list_files(root) if skip_reason_for_path(p) is None]
