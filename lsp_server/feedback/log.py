"""The feedback log on disk: where it lives, the one writer, the one reader.

One log per repository, under `$CODETAILOR_HOME/feedback/<repo key>/`, as JSON
lines (`lsp_server.feedback.events`) in `events.jsonl` (the newest segment) and
`events.1.jsonl` (the one before). Nothing here is ever sent anywhere.

- Append-only and crash-safe: each event is one `os.write` of one line on a
  file opened with O_APPEND; a killed server loses at most the event it was
  writing. `os.fsync` runs at most once per `SYNC_SECONDS` (and on close), so a
  burst of events costs one sync, and a machine crash loses at most that long.
  A torn last line is skipped on read and cut off before the first append; one
  that another writer leaves later is ended with a newline before our next
  event, so it never glues onto a good event.
- Bounded: when the newest segment would pass half of `max_bytes`, it becomes
  `events.1.jsonl` and the older segment is dropped, oldest first.
- Read back as typed events, oldest first; a log holding events of a newer
  schema is refused with one line that says to upgrade.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from lsp_server.errors import CodetailorError
from lsp_server.feedback.events import FeedbackEvent, NewerSchemaError

EVENTS = "events.jsonl"
OLDER = "events.1.jsonl"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
SYNC_SECONDS = 1.0


def repo_key(root: str | Path) -> str:
    """The folder name of a repository's log: its name and a hash of its absolute path."""
    resolved = Path(root).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^\w.-]", "_", resolved.name) or "root"
    return f"{name}-{digest}"


def feedback_dir(root: str | Path, home: Path) -> Path:
    """Where the log of the repository at `root` lives under the cache home `home`."""
    return home / "feedback" / repo_key(root)


class EventLog:
    """Append-only, size-bounded JSON lines in one folder: the log's only writer."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()
        self._synced_at = float("-inf")
        self._dirty = False  # written since the last fsync
        self.written = 0  # events appended by this process

    @property
    def path(self) -> Path:
        return self.folder / EVENTS

    def _open(self) -> int:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self.close()  # `codetailor feedback clear` removed the file: start a new one
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            _cut_torn_tail(self.path)
            self._fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def append(self, event: FeedbackEvent) -> None:
        """Write one event as one line, on a line of its own; fsync at most once a second."""
        data = (event.to_json() + "\n").encode()
        with self._lock:
            fd = self._open()
            if self._size and self._size + len(data) > self.max_bytes // 2:
                self._rotate()
                fd = self._open()
            if _ends_mid_line(fd):  # another writer's torn line: ours starts a new one
                data = b"\n" + data
            os.write(fd, data)
            self._size = os.fstat(fd).st_size
            self.written += 1
            self._dirty = True
            if time.monotonic() - self._synced_at >= SYNC_SECONDS:
                self._sync(fd)

    def _sync(self, fd: int) -> None:
        os.fsync(fd)
        self._synced_at = time.monotonic()
        self._dirty = False

    def _rotate(self) -> None:
        """The newest segment becomes the older one; the older one is dropped."""
        self.close()
        os.replace(self.path, self.folder / OLDER)

    def close(self) -> None:
        if self._fd is not None:
            if self._dirty:
                self._sync(self._fd)
            os.close(self._fd)
            self._fd = None


def _ends_mid_line(fd: int) -> bool:
    """Whether the file open at `fd` is non-empty and does not end with a newline."""
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def _cut_torn_tail(path: Path) -> None:
    """Truncate a last line without its newline (a write cut short by a crash)."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read(back)
            f.truncate(size - back + tail.rfind(b"\n") + 1)
    except FileNotFoundError:
        return


def _lines(folder: Path) -> Iterator[bytes]:
    """The non-blank lines of both segments, oldest first. CodetailorError (one line) for a
    segment that exists but cannot be read (a folder in its place, no permission)."""
    for name in (OLDER, EVENTS):
        try:
            raw = (folder / name).read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise CodetailorError(f"cannot read the feedback log {folder / name}: {exc}") from exc
        yield from (line for line in raw.split(b"\n") if line.strip())


def _json(line: bytes) -> object:
    """One line's JSON value; ValueError for a garbled one, also one nested too deep to
    parse (the json module raises RecursionError there)."""
    try:
        return json.loads(line)
    except RecursionError as exc:
        raise ValueError("nested too deep") from exc


def read_events(folder: Path) -> list[FeedbackEvent]:
    """Every readable event in the log at `folder`, oldest first; a torn or garbled line
    (or one of a kind this version does not know) is skipped. Raises CodetailorError for
    a log that holds events of a newer schema."""
    events: list[FeedbackEvent] = []
    for line in _lines(folder):
        try:
            events.append(FeedbackEvent.from_json(line))
        except NewerSchemaError as exc:
            raise CodetailorError(f"feedback log {folder}: {exc}") from exc
        except (ValueError, RecursionError):  # json raises RecursionError for deep nesting
            continue
    return events


def count_events(folder: Path) -> int:
    """How many lines of the log at `folder` are events, of any kind or schema: what
    `codetailor feedback clear` removes, even from a log this version cannot read."""
    count = 0
    for line in _lines(folder):
        try:
            raw = _json(line)
        except ValueError:
            continue
        count += isinstance(raw, dict) and "event" in raw
    return count


def remove_log(folder: Path) -> None:
    """Delete the log folder and everything under it, however deep, never following a
    symbolic link. Each subfolder's own subfolders are first moved up into `folder`, so no
    path grows long and no recursion (nor one open folder per level) is needed."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    top = os.open(folder, flags)
    moved = 0
    try:
        while names := os.listdir(top):
            for name in names:
                if not _is_folder(name, top):  # a file or a link (not followed)
                    os.unlink(name, dir_fd=top)
                    continue
                sub = os.open(name, flags, dir_fd=top)
                try:
                    for entry in os.listdir(sub):
                        if _is_folder(entry, sub):
                            moved += 1
                            os.rename(entry, f".removing-{moved}", src_dir_fd=sub, dst_dir_fd=top)
                        else:
                            os.unlink(entry, dir_fd=sub)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(folder)


def _is_folder(name: str, dir_fd: int) -> bool:
    return stat.S_ISDIR(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
