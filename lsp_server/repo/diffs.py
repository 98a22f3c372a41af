"""A repository's history as plain values: commits, their files' changes, and hunks.

Pure (no I/O): `parse_log` reads the output of the one `git log` call the
history miner makes (`LOG_ARGS`: first-parent, non-merge, oldest first, with
`-U0` patches so each hunk is one contiguous block of changed lines and no
context), `apply_hunks` replays hunks onto a file's lines, and `patch_id`
identifies a change the way `git patch-id --stable` does (whitespace and line
numbers ignored, file order ignored), so a cherry-pick of an earlier commit,
or a revert of one, is recognised without a second git call.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# Each commit's header: NUL-separated fields after a marker no patch line can hold.
_MARK = "\0\0commit\0"
LOG_FORMAT = "%x00%x00commit%x00%H%x00%P%x00%an%x00%ae%x00%at%x00%s%x00%b%x00"
LOG_ARGS = (
    "log",
    "--first-parent",
    "--no-merges",
    "--reverse",
    "-p",
    "-U0",
    "-M",
    "--no-color",
    "--no-abbrev",
    f"--format={LOG_FORMAT}",
)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Hunk:
    """One contiguous block of changed lines: `old` lines became `new` lines.

    `old_start` is the 0-based index, in the file before the commit, of the
    first removed line (for a pure insertion: of the line the new lines go before).
    Lines carry no line terminator.
    """

    path: str
    old_start: int
    old: tuple[str, ...]
    new: tuple[str, ...]

    @property
    def whitespace_only(self) -> bool:
        """The change disappears once whitespace is ignored (what `git diff -w` hides)."""
        return [_SPACE.sub("", line) for line in self.old] == [
            _SPACE.sub("", line) for line in self.new
        ]

    @property
    def size(self) -> int:
        """Changed lines: removed plus added."""
        return len(self.old) + len(self.new)


@dataclass(frozen=True)
class FileChange:
    """One file's part of a commit; a path is None where the file did not exist."""

    old_path: str | None
    new_path: str | None
    hunks: tuple[Hunk, ...] = ()
    binary: bool = False

    @property
    def path(self) -> str:
        """The file's path after the commit (before it, for a deletion)."""
        return self.new_path or self.old_path or ""

    @property
    def renamed(self) -> bool:
        return bool(self.old_path and self.new_path and self.old_path != self.new_path)


@dataclass(frozen=True)
class Commit:
    """A first-parent, non-merge commit and what it changed."""

    sha: str
    parent: str | None
    author_name: str
    author_email: str
    time: int
    subject: str
    body: str
    files: tuple[FileChange, ...]

    @property
    def hunks(self) -> tuple[Hunk, ...]:
        return tuple(h for f in self.files for h in f.hunks)


def parse_log(output: str) -> list[Commit]:
    """The commits of `git log` run with `LOG_ARGS`, in the order git printed them."""
    commits = []
    for record in output.split(_MARK)[1:]:
        fields = record.split("\0", 7)
        if len(fields) < 8:
            continue
        sha, parents, name, email, when, subject, body, patch = fields
        commits.append(
            Commit(
                sha=sha,
                parent=parents.split()[0] if parents.split() else None,
                author_name=name,
                author_email=email,
                time=int(when or 0),
                subject=subject,
                body=body.strip(),
                files=tuple(parse_patch(patch)),
            )
        )
    return commits


def parse_patch(patch: str) -> list[FileChange]:
    """The file changes of one commit's `-U0` patch text."""
    changes = []
    blocks = re.split(r"^diff --git ", patch, flags=re.MULTILINE)[1:]
    for block in blocks:
        lines = block.split("\n")
        old_path, new_path = _header_paths(lines[0])
        binary = False
        body_at = len(lines)
        for i, line in enumerate(lines[1:], start=1):
            if line.startswith("@@"):
                body_at = i
                break
            if line.startswith("rename from "):
                old_path = _unquote(line[len("rename from ") :])
            elif line.startswith("rename to "):
                new_path = _unquote(line[len("rename to ") :])
            elif line.startswith("--- "):
                old_path = _side_path(line[4:], "a/")
            elif line.startswith("+++ "):
                new_path = _side_path(line[4:], "b/")
            elif line.startswith("new file mode"):
                old_path = None
            elif line.startswith("deleted file mode"):
                new_path = None
            elif line.startswith("Binary files ") or line.startswith("GIT binary patch"):
                binary = True
        path = new_path or old_path or ""
        hunks = tuple(_hunks(lines[body_at:], path))
        changes.append(FileChange(old_path, new_path, hunks, binary))
    return changes


def _hunks(lines: Sequence[str], path: str) -> Iterable[Hunk]:
    i = 0
    while i < len(lines):
        m = _HUNK.match(lines[i])
        i += 1
        if not m:
            continue
        old_first, old_count = int(m[1]), int(m[2] if m[2] is not None else 1)
        old: list[str] = []
        new: list[str] = []
        while i < len(lines) and not lines[i].startswith("@@"):
            line = lines[i]
            if line.startswith("-"):
                old.append(line[1:])
            elif line.startswith("+"):
                new.append(line[1:])
            i += 1
        # "-a,0" inserts after line a (1-based), i.e. before 0-based index a.
        start = old_first if old_count == 0 else old_first - 1
        yield Hunk(path, start, tuple(old), tuple(new))


def _header_paths(header: str) -> tuple[str | None, str | None]:
    """Both paths of a `diff --git a/X b/Y` line where X == Y (the usual case); the
    `---`/`+++` or rename lines that follow correct anything else."""
    header = header.rstrip()
    half = (len(header) - 1) // 2
    left, right = header[:half], header[half + 1 :]
    if left.startswith("a/") and right.startswith("b/") and left[2:] == right[2:]:
        return left[2:], right[2:]
    return None, None


def _side_path(text: str, prefix: str) -> str | None:
    text = _unquote(text.rstrip("\t"))
    if text == "/dev/null":
        return None
    return text[len(prefix) :] if text.startswith(prefix) else text


def _unquote(text: str) -> str:
    """A path git printed in C-style quotes (control characters, quotes, backslashes)."""
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        return text
    raw = text[1:-1].encode("utf-8", "surrogateescape").decode("unicode_escape")
    return raw.encode("latin-1", "surrogateescape").decode("utf-8", "surrogateescape")


def apply_hunks(lines: list[str], applied: Sequence[Hunk], hunk: Hunk) -> int | None:
    """Apply `hunk` to `lines` (a file's current lines, after `applied` hunks of the same
    commit and file, in any order) in place; the index where its new lines begin, or
    None (and `lines` untouched) where the lines there are not the hunk's old lines."""
    at = current_line(applied, hunk.old_start)
    if lines[at : at + len(hunk.old)] != list(hunk.old):
        return None
    lines[at : at + len(hunk.old)] = hunk.new
    return at


def current_line(applied: Iterable[Hunk], old_line: int) -> int:
    """Where line `old_line` of the file before the commit is once `applied` hunks of the
    same file are in (hunks of one diff never overlap, so order does not matter)."""
    return old_line + sum(len(h.new) - len(h.old) for h in applied if h.old_start < old_line)


def old_line(applied: Iterable[Hunk], line: int, *, end: bool = False) -> int:
    """The line of the file before the commit that current line `line` came from; a line
    inside an applied hunk's new text maps to the hunk's first old line (its end, with
    `end`), so a window of current lines maps to the old lines it replaced."""
    delta = 0
    for h in sorted(applied, key=lambda h: h.old_start):
        start = h.old_start + delta
        if line < start:
            break
        if line < start + len(h.new):
            return h.old_start + (len(h.old) if end else 0)
        delta += len(h.new) - len(h.old)
    return line - delta


def patch_id(files: Iterable[FileChange], *, reverse: bool = False) -> str:
    """An id of a change that ignores whitespace, line numbers and file order, like
    `git patch-id --stable` (over `-U0` hunks); `reverse` gives the id of its revert."""
    total = 0
    for f in files:
        if not f.hunks:
            continue
        old_path, new_path = (f.new_path, f.old_path) if reverse else (f.old_path, f.new_path)
        digest = hashlib.sha1(f"{old_path}\0{new_path}\0".encode(errors="surrogateescape"))
        for h in f.hunks:
            removed, added = (h.new, h.old) if reverse else (h.old, h.new)
            for sign, block in (("-", removed), ("+", added)):
                for line in block:
                    digest.update((sign + _SPACE.sub("", line) + "\n").encode(errors="replace"))
        total = (total + int.from_bytes(digest.digest(), "big")) % (1 << 160)
    return f"{total:040x}"
