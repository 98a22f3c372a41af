"""A file's text at git HEAD: the "original" a next-edit window is compared with.

Training mines next edits from commits, so serving compares the window with the
file as committed where git tracks it (`head_text`); the session falls back to
the text as it was opened. Reading it runs git on the user's folder, so it is
done here, in the I/O room, and handed to the session through a port.

The one git call below is `cat-file blob HEAD:./NAME` run in the file's folder:
it reads a blob and runs no filter, driver, hook, textconv or pager, and the
environment it runs in drops inherited `GIT_*` variables and skips system and
global configuration. When `lsp_server/repo/git.py` (`run_git`, the one safe way
to run git on a user's folder, from the harden-git branch) is merged, `_git_blob`
becomes `run_git(folder, "cat-file", "blob", spec, timeout=...)`.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

HEAD_TIMEOUT_S = 5.0
MAX_BYTES = 2_000_000  # a bigger file is no next-edit window's original


def head_text(path: str) -> str | None:
    """The text of the file at `path` in its repository's HEAD commit; None when git is
    missing, the folder is no repository, the file is untracked, binary or too big."""
    file = Path(path)
    if not file.parent.is_dir():
        return None
    data = _git_blob(file.parent, f"HEAD:./{file.name}")
    if data is None or len(data) > MAX_BYTES or b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


def _git_blob(folder: Path, spec: str) -> bytes | None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
    }
    command = ["git", "-c", "core.fsmonitor=false", "-c", "core.hooksPath=/dev/null"]
    command += ["-C", str(folder), "cat-file", "blob", spec]
    try:
        done = subprocess.run(
            command, capture_output=True, env=env, timeout=HEAD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None
