"""The workspace the client opened: its root and its folders, held once.

The client names a root (the workspace served: its context index and its
feedback log) and any number of workspace folders (each answered by its own
adapter). This object is the one copy of both: the context
(lsp_server.session.workspace) and the adapter choice
(lsp_server.session.adapter_choice) read it, and only the session changes it.
Pure: plain paths, no file access.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from lsp_server.session.documents import uri_to_path


@dataclass
class WorkspaceFolders:
    """The workspace root and every workspace folder, as file-system paths.

    `root` is set when the client connects and stays when its folder is later
    removed (the context index and the feedback log stay with it); `folders`
    follows the client's changes, the first being the default one.
    """

    root: str | None = None
    folders: list[str] = field(default_factory=list)

    def open(self, root_uri: str | None, folder_uris: Iterable[str] = ()) -> None:
        """The client connected with `root_uri` and `folder_uris` (no folders: the root's)."""
        self.root = uri_to_path(root_uri) if root_uri else None
        paths = [p for p in map(uri_to_path, folder_uris) if p]
        self.folders = paths or ([self.root] if self.root else [])

    def change(self, added_uris: Iterable[str], removed_uris: Iterable[str]) -> None:
        """Workspace folders added and removed (didChangeWorkspaceFolders), as URIs."""
        removed = [p for p in map(uri_to_path, removed_uris) if p]
        kept = [f for f in self.folders if f not in removed]
        added = [p for p in map(uri_to_path, added_uris) if p]
        self.folders = kept + [f for f in added if f not in kept]
