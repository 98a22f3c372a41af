"""The server's view of the workspace: document paths and cross-file context.

Bridges the open documents (by URI) and the `ContextIndex` (by workspace-
relative path). The event loop only records which documents changed; the
index is brought up to date on the worker thread, just before a completion
needs it, so typing never waits on indexing. Setting the root starts a
background scan and returns at once (an earlier scan is told to stop, never
joined). With a root, only documents inside it become context for others.
"""

from __future__ import annotations

import threading
from pathlib import Path

from lsp_server.completion.prompt import Snippet
from lsp_server.completion.retrieval import ContextIndex, StableContext
from lsp_server.session.documents import Documents, looks_binary, uri_to_path


class WorkspaceContext:
    """Workspace root, document paths, and snippets of other files for the prompt."""

    def __init__(self, index: ContextIndex | None = None) -> None:
        self.index = index or ContextIndex()
        self.stable = StableContext(self.index)
        self.root: Path | None = None
        # Every workspace folder: a document's path in the prompt is relative to its own.
        self.folders: list[Path] = []
        self._lock = threading.Lock()
        self._dirty: dict[str, bool] = {}  # uri -> edited (False: only opened)

    def set_root(self, root_uri: str | None, *, scan: bool) -> None:
        """Use `root_uri` as the workspace; index its files in the background if `scan`."""
        path = uri_to_path(root_uri) if root_uri else None
        if not path or not Path(path).is_dir():
            return
        self.root = Path(path).resolve()
        self.index.root = self.root
        if scan:
            self.index.index_workspace(self.root)

    def set_folders(self, folders: list[str]) -> None:
        """The workspace folders (paths), the root's among them or not."""
        self.folders = [Path(f).resolve() for f in folders]

    def path_of(self, uri: str) -> str | None:
        """The document's path as the prompt shows it: relative to the workspace folder
        that holds it (the innermost, the root first) where one does, else its name."""
        fs_path = uri_to_path(uri)
        if not fs_path:
            return None
        path = Path(fs_path).resolve()
        roots = [self.root] if self.root is not None else []
        roots += sorted(self.folders, key=lambda f: len(f.parts), reverse=True)
        for root in roots:
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return path.name

    def in_workspace(self, uri: str) -> bool:
        """True when there is no root, or the document lies inside it."""
        if self.root is None:
            return True
        fs_path = uri_to_path(uri)
        try:
            Path(fs_path or "").resolve().relative_to(self.root)
        except (ValueError, OSError):
            return False
        return bool(fs_path)

    def opened(self, uri: str) -> None:
        with self._lock:
            self._dirty.setdefault(uri, False)

    def changed(self, uri: str) -> None:
        with self._lock:
            self._dirty[uri] = True

    def closed(self, uri: str) -> None:
        with self._lock:
            self._dirty.pop(uri, None)
        if path := self.path_of(uri):
            self.index.close_document(path)

    def snippets(self, documents: Documents, uri: str, text: str, offset: int) -> list[Snippet]:
        """Snippets of other files for a completion at `offset` (call off the event loop)."""
        with self._lock:
            dirty, self._dirty = self._dirty, {}
        for changed_uri, edited in dirty.items():
            doc = documents.get(changed_uri)
            path = self.path_of(changed_uri)
            too_big = doc is not None and len(doc.text) > self.index.max_file_bytes
            if doc is None or path is None or too_big or looks_binary(doc.text):
                continue
            if not self.in_workspace(changed_uri):
                continue  # e.g. ~/.ssh/config open in the editor: not context for others
            self.index.update_document(path, doc.text, is_open=True, edited=edited)
        return self.stable.get(text, offset, self.path_of(uri))

    def status(self) -> dict[str, object]:
        done, listed = self.index.progress
        return {
            "root": str(self.root) if self.root else None,
            "indexedFiles": len(self.index),
            "scan": {"done": done, "listed": listed},
        }

    def stop(self) -> None:
        self.index.stop()
