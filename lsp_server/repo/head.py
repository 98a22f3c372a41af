"""A file's text at git HEAD: the "original" a next-edit window is compared with.

Training mines next edits from commits, so serving compares the window with the
file as committed where git tracks it (`head_text`); the session falls back to
the text as it was opened. Reading it runs git on the user's folder, so it is
done here, in the I/O room, and handed to the session through a port.

It runs `cat-file blob HEAD:./NAME` in the file's folder through `run_git`, the
one safe way to run git on a user's folder (lsp_server/repo/git.py): the folder's
configuration cannot make git run anything.
"""

from __future__ import annotations

from pathlib import Path

from lsp_server.repo.git import run_git

HEAD_TIMEOUT_S = 5.0
MAX_BYTES = 2_000_000  # a bigger file is no next-edit window's original


def head_text(path: str) -> str | None:
    """The text of the file at `path` in its repository's HEAD commit; None when git is
    missing, the folder is no repository, the file is untracked, binary or too big."""
    file = Path(path)
    if not file.parent.is_dir():
        return None
    data = run_git(file.parent, "cat-file", "blob", f"HEAD:./{file.name}", timeout=HEAD_TIMEOUT_S)
    if data is None or len(data) > MAX_BYTES or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")
