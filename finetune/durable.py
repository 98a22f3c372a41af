"""Writing the run's folders so that a crash, a power cut or a second run cannot spoil them.

- `claim(out)`: an exclusive `fcntl.flock` on `OUT.lock` (beside OUT, which is
  swapped), held by this process until `release` or its exit; a second run on
  the same OUT fails at once with one line saying which process holds it. The
  lock file is deleted on release (while still locked), so none is left behind;
  a claimant that locked a file deleted meanwhile sees that the path no longer
  names its file and tries again. (filelock, in the environment, keeps the file
  on purpose on Unix, so it is not used here.)
- `fsync_tree(folder)`: every file and the folder itself reach the disk before
  the rename that publishes them (otherwise a power cut can leave a renamed
  folder of empty files).
- `swap_in(new, final)`: `final` is replaced by `new` and is never absent in
  between: on Linux the two are exchanged atomically (`renameat2` with
  `RENAME_EXCHANGE`); where that is missing, the old folder is renamed aside
  just before the new one takes its place, a window of two renames.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import errno
import os
import shutil
from pathlib import Path

from lsp_server.errors import CodetailorError

_HELD: dict[Path, int] = {}  # lock file -> open descriptor holding the flock
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


def claim(out: Path) -> None:
    """Hold `OUT.lock` for this process (again: a no-op), or raise a one-line error."""
    import fcntl

    lock = lock_path(out.absolute())
    if lock in _HELD or not _is_main_rank():
        return  # a resumed run in the same process, or a non-main `accelerate` rank
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise CodetailorError(
                    f"another finetune run (pid {holder}) is writing {out}; wait for it to "
                    "finish or choose another --out"
                ) from None
            raise CodetailorError(f"cannot lock {lock}: {exc.strerror or exc}") from None
        if _still_named(fd, lock):
            break
        os.close(fd)  # its holder deleted it on release: lock the file that is there now
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[lock] = fd
    atexit.register(release, out)


def _still_named(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def release(out: Path) -> None:
    """Let go of `OUT.lock` and delete it (a later claimant locks a new file)."""
    lock = lock_path(out.absolute())
    fd = _HELD.pop(lock, None)
    if fd is not None:
        with contextlib.suppress(OSError):
            lock.unlink()  # while still locked: no one can hold the old file after this
        os.close(fd)


def _is_main_rank() -> bool:
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def fsync_path(path: Path) -> None:
    """Flush one file or folder to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Flush every file under `folder`, then each folder, deepest first."""
    for here, _, files in os.walk(folder, topdown=False):
        for name in files:
            fsync_path(Path(here) / name)
        fsync_path(Path(here))


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux `renameat2`); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    done = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False  # old kernel, or a file system without exchange
    raise OSError(code, os.strerror(code), str(b))


def swap_in(new: Path, final: Path) -> None:
    """Put the finished folder `new` at `final`, durably; `final` is never absent.

    `new` must be fully written; it is flushed here. Afterwards `new` no longer
    exists (the old contents of `final`, if any, are deleted).
    """
    fsync_tree(new)
    if final.exists() and exchange(new, final):
        fsync_path(final.parent)
        shutil.rmtree(new, ignore_errors=True)  # now the old folder
        return
    aside = final.with_name(final.name + ".old")
    shutil.rmtree(aside, ignore_errors=True)
    if final.exists():
        final.rename(aside)  # the only window where `final` is missing: two renames
    os.replace(new, final)
    fsync_path(final.parent)
    with contextlib.suppress(OSError):
        shutil.rmtree(aside)
