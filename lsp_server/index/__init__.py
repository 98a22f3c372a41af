"""The workspace index: the workspace's files, listed, read and redacted into the context index.

An I/O room (no torch, no pygls): `WorkspaceScanner` lists the files of the
workspace root that count (`lsp_server.repo.files`' rules), reads each one
(regular files inside the root only, bounded), redacts it and hands it to the
pure `lsp_server.completion.retrieval.ContextIndex`, on a thread of its own;
it also answers the session's questions about paths on disk (is this root a
folder, where does this document really live). The server shell builds one per
connection and gives it to the session (`Session(scanner=...)`, through
`lsp_server.session.ports.ScannerLike`).
"""

from lsp_server.index.scanner import WorkspaceScanner, indexable_files

__all__ = ["WorkspaceScanner", "indexable_files"]
