"""The server's view of the workspace: document paths and cross-file context.

Bridges the open documents (by URI) and the `ContextIndex` (by workspace-
relative path). The event loop only records which documents changed; the
index is brought up to date on the worker thread, just before a completion
needs it, so typing never waits on indexing. Indexing the root starts a
background scan and returns at once (an earlier scan is told to stop, never
joined). With a root, only documents inside it become context for others.
The root and the folders are the session's `WorkspaceFolders`, read here.
Everything on disk (the scan, resolving paths) is the `scanner`'s
(`ScannerLike`; the server's is `lsp_server.index.WorkspaceScanner`).
"""

from __future__ import annotations

import threading
from pathlib import Path

from lsp_server.completion.prompt import Snippet
from lsp_server.completion.retrieval import StableContext
from lsp_server.session.documents import Documents, looks_binary, uri_to_path
from lsp_server.session.folders import WorkspaceFolders
from lsp_server.session.ports import NoScanner, ScannerLike


class WorkspaceContext:
    """Document paths, and snippets of other files for the prompt, in the workspace
    (`workspace`: its root and folders, shared with the session; `scanner`: the disk,
    and the index it feeds; None: `NoScanner`, nothing on disk)."""

    def __init__(
        self, scanner: ScannerLike | None = None, workspace: WorkspaceFolders | None = None
    ) -> None:
        self.scanner: ScannerLike = scanner if scanner is not None else NoScanner()
        self.index = self.scanner.index
        self.stable = StableContext(self.index)
        self.workspace = workspace or WorkspaceFolders()
        # The folders resolved, for the folders they were resolved from.
        self._resolved: tuple[list[str], list[Path]] = ([], [])
        self._lock = threading.Lock()
        self._dirty: dict[str, bool] = {}  # uri -> edited (False: only opened)

    @property
    def root(self) -> Path | None:
        """The workspace root as indexed (resolved); None until a root that is a folder is."""
        return self.index.root

    def index_root(self, *, scan: bool) -> None:
        """Take the workspace root as the index's; index its files in the background if
        `scan`. A root that is not a folder is not taken."""
        path = self.workspace.root
        root = self.scanner.folder(path) if path else None
        if root is None:
            return
        self.index.root = root
        if scan:
            self.scanner.scan(root)

    def _folders(self) -> list[Path]:
        """Every workspace folder, resolved: a document's path in the prompt is relative
        to its own."""
        if self._resolved[0] != self.workspace.folders:
            folders = list(self.workspace.folders)
            located = (self.scanner.locate(f) for f in folders)
            self._resolved = (folders, [p for p in located if p is not None])
        return self._resolved[1]

    def path_of(self, uri: str) -> str | None:
        """The document's path as the prompt shows it: relative to the workspace folder
        that holds it (the innermost, the root first) where one does, else its name."""
        fs_path = uri_to_path(uri)
        if not fs_path:
            return None
        path = self.scanner.locate(fs_path)
        if path is None:  # a name the file system cannot take
            return None
        indexed = self.root
        roots = [indexed] if indexed is not None else []
        roots += sorted(self._folders(), key=lambda f: len(f.parts), reverse=True)
        for root in roots:
            if path.is_relative_to(root):
                return path.relative_to(root).as_posix()
        return path.name

    def in_workspace(self, uri: str) -> bool:
        """True when there is no root, or the document lies inside it."""
        root = self.root
        if root is None:
            return True
        fs_path = uri_to_path(uri)
        path = self.scanner.locate(fs_path) if fs_path else None
        return path is not None and path.is_relative_to(root)

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
        done, listed = self.scanner.progress
        return {
            "root": str(self.root) if self.root else None,
            "indexedFiles": len(self.index),
            "scan": {"done": done, "listed": listed},
        }

    def stop(self) -> None:
        self.scanner.stop()
