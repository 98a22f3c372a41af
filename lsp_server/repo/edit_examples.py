"""Next-edit examples from a commit: its earlier hunks as history, its next hunk as the target.

Pure (no I/O): the caller gives the commit (already filtered by
`lsp_server.repo.commits`) and the text of each file before it.

The hunks are ordered by `hunk_order` (git records no order).

For each split point k >= 1 of the ordered hunks, the file of hunk k is taken
as it was before the commit with hunks 0..k-1 applied; those hunks are the
history (`RecentEdit` blocks, newest last) and hunk k is the target. The
cursor stands where the user left the last hunk when that hunk is in the same
file and the target lies in the window around it (the target is then above,
below or at the cursor); otherwise the user went to the target (at the
cursor). The window is `WINDOW_RADIUS` lines above the cursor's line, that
line and `WINDOW_RADIUS` below (Sweep's 21 lines); its `original` is the same
lines before the commit. Targets that only change whitespace, are larger than
`MAX_TARGET_LINES`, or undo an earlier hunk of the history are not asked for.
After a commit's last hunk, nothing more is due: that window is a "no edit"
example (`no_edit_candidate`); `mix_no_edit` keeps enough of them for
`NO_EDIT_SHARE` of a set. `leaks` says whether a target's change was already
made by an earlier commit (a held-out example must not be one), and
`dedupe` drops repeats. Every text is passed through the secret redaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lsp_server.completion.next_edit import EditWindow, NextEditRequest, RecentEdit
from lsp_server.measure.quality.metrics import normalize_whitespace
from lsp_server.repo.diffs import Commit, Hunk, apply_hunks, current_line, old_line
from lsp_server.repo.hunk_order import DEFAULT_ORDER, ORDERS
from lsp_server.repo.secrets import redact

WINDOW_RADIUS = 10  # lines above and below the cursor's line (Sweep's window)
MAX_TARGET_LINES = 10  # a target removing or adding more lines is not asked for
MAX_HISTORY = 8  # most recent edits kept in an example
MAX_PER_COMMIT = 16  # edit-due examples per commit, so a large commit does not dominate
NO_EDIT_SHARE = 0.2  # share of "no edit" windows in a set (the issue asks 15-25%)

CATEGORIES = ("below", "above", "at")  # where the target is relative to the cursor
NO_EDIT = "none"


@dataclass(frozen=True)
class NextEditExample:
    """A request as the server would build it, and the window the user went on to write."""

    commit: str
    request: NextEditRequest
    expected: str  # the window as it will be; equal to request.window.current: no edit due
    category: str  # "below", "above", "at" (edit due), or "none"
    target: Hunk | None = None

    @property
    def edit_due(self) -> bool:
        return self.category != NO_EDIT

    @property
    def key(self) -> str:
        """Identity for deduplication and stable sampling."""
        last = self.request.history[-1] if self.request.history else None
        parts = (self.request.path, self.request.window.current, self.expected, repr(last))
        return hashlib.sha256("\0".join(parts).encode(errors="replace")).hexdigest()


def commit_examples(
    commit: Commit, before: dict[str, str], order: str = DEFAULT_ORDER
) -> tuple[list[NextEditExample], list[NextEditExample]]:
    """(edit-due examples, "no edit" windows) of one commit.

    A "no edit" window is the one around the last hunk when none of the hunks
    still to come lies in it: after the commit's last hunk, and after the last
    hunk of a file or of a part of one. `before` maps each changed file's path
    before the commit to its text; a file missing from it is left out.
    """
    texts: dict[str, list[str]] = {}
    for change in commit.files:
        source = "" if change.old_path is None else before.get(change.old_path)
        if change.new_path is not None and source is not None:
            texts[change.new_path] = source.split("\n")
    hunks = ORDERS[order]([h for h in commit.hunks if h.path in texts])
    applied: list[Hunk] = []
    examples: list[NextEditExample] = []
    quiet: list[NextEditExample] = []
    for i, hunk in enumerate(hunks + [None]):
        if applied and _nothing_due(hunks[i:], applied):
            quiet.append(_example(commit, texts, applied, None, before))
        if hunk is None:
            break
        if applied and _askable(hunk, applied):
            examples.append(_example(commit, texts, applied, hunk, before))
        if apply_hunks(texts[hunk.path], _same_file(applied, hunk.path), hunk) is None:
            break  # the history does not line up with the text: stop here
        applied.append(hunk)
    return sorted(examples, key=lambda e: e.key)[:MAX_PER_COMMIT], quiet


def _nothing_due(remaining: Sequence[Hunk], applied: Sequence[Hunk]) -> bool:
    """No hunk still to come lies in the window around the end of the last one."""
    path, line, _ = _cursor(applied, None)
    return not any(h.path == path and _in_window(h, applied, line) for h in remaining)


def _same_file(hunks: Iterable[Hunk], path: str) -> list[Hunk]:
    return [h for h in hunks if h.path == path]


def _askable(target: Hunk, history: Sequence[Hunk]) -> bool:
    if target.whitespace_only:
        return False
    if len(target.old) > MAX_TARGET_LINES or len(target.new) > MAX_TARGET_LINES:
        return False
    return not any(reverts(target, earlier) for earlier in history)


def reverts(target: Hunk, earlier: Hunk) -> bool:
    """`target` undoes `earlier` (the same lines back as they were, whitespace aside)."""
    return _norm(target.old) == _norm(earlier.new) and _norm(target.new) == _norm(earlier.old)


def _norm(lines: Sequence[str]) -> str:
    return normalize_whitespace("\n".join(lines))


def _cursor(applied: Sequence[Hunk], target: Hunk | None) -> tuple[str, int, int]:
    """(path, line, column) of the cursor: at the end of the last hunk's new text when
    that is in the target's file and within the window, else at the target."""
    last = applied[-1] if applied else None
    if last is not None and (target is None or last.path == target.path):
        at = current_line(_same_file(applied[:-1], last.path), last.old_start)
        line = at + max(len(last.new), 1) - 1
        column = len(last.new[-1]) if last.new else 0
        if target is None or _in_window(target, applied, line):
            return last.path, line, column
    assert target is not None
    return target.path, current_line(_same_file(applied, target.path), target.old_start), 0


def _in_window(target: Hunk, applied: Sequence[Hunk], line: int) -> bool:
    start = current_line(_same_file(applied, target.path), target.old_start)
    return line - WINDOW_RADIUS <= start and start + len(target.old) <= line + WINDOW_RADIUS + 1


def _category(target: Hunk, start: int, line: int) -> str:
    end = start + len(target.old)
    if start <= line < end or (start == end == line):
        return "at"
    return "below" if start > line else "above"


def _example(
    commit: Commit,
    texts: dict[str, list[str]],
    applied: Sequence[Hunk],
    target: Hunk | None,
    before: dict[str, str],
) -> NextEditExample:
    """The example for `target` (None: the "no edit" window after the last hunk)."""
    path, line, column = _cursor(applied, target)
    lines = texts[path]
    body = lines[:-1] if lines and lines[-1] == "" else lines  # no line after the last newline
    first, last = max(0, line - WINDOW_RADIUS), min(len(body), line + WINDOW_RADIUS + 1)
    current = body[first:last]
    expected = list(current)
    category = NO_EDIT
    if target is not None:
        start = current_line(_same_file(applied, path), target.old_start)
        category = _category(target, start, line)
        expected[start - first : start - first + len(target.old)] = target.new
    change = next(f for f in commit.files if f.new_path == path)
    old_lines = before.get(change.old_path or "", "").split("\n")
    mine = _same_file(applied, path)
    original = old_lines[old_line(mine, first) : old_line(mine, last, end=True)]
    width = len(lines[line]) if line < len(lines) else 0
    cursor = sum(len(x) + 1 for x in current[: line - first]) + min(column, width)
    windows = (original, current, expected)
    return _redacted(commit.sha, path, first, applied, windows, cursor, category, target)


def _redacted(
    sha: str,
    path: str,
    first: int,
    applied: Sequence[Hunk],
    windows: tuple[list[str], list[str], list[str]],
    cursor: int,
    category: str,
    target: Hunk | None,
) -> NextEditExample:
    """The example with every text through the secret redaction (the cursor kept in place)."""
    original, current, expected = ("".join(x + "\n" for x in w) for w in windows)
    head, _ = redact(current[:cursor], path)
    tail, _ = redact(current[cursor:], path)
    history = tuple(
        RecentEdit(h.path, redact("\n".join(h.old), h.path)[0], redact("\n".join(h.new), h.path)[0])
        for h in applied[-MAX_HISTORY:]
    )
    window = EditWindow(
        start_line=first, original=redact(original, path)[0], current=head + tail, cursor=len(head)
    )
    expected_text = window.current if target is None else redact(expected, path)[0]
    return NextEditExample(
        sha, NextEditRequest(path, history, window), expected_text, category, target
    )


def no_edit_score(example: NextEditExample) -> float:
    """A stable number in [0, 1) per example, to pick "no edit" windows without a seed."""
    return int(example.key[:16], 16) / 16**16


def mix_no_edit(
    edit_due: Sequence[NextEditExample], no_edit: Sequence[NextEditExample]
) -> list[NextEditExample]:
    """`edit_due` plus as many `no_edit` windows (lowest `no_edit_score` first) as make up
    `NO_EDIT_SHARE` of the result, or all of them where there are fewer."""
    wanted = round(len(edit_due) * NO_EDIT_SHARE / (1 - NO_EDIT_SHARE))
    return [*edit_due, *sorted(no_edit, key=no_edit_score)[:wanted]]


def dedupe(examples: Iterable[NextEditExample]) -> list[NextEditExample]:
    """The first of each set of examples with the same window, expected text and last edit."""
    seen: set[str] = set()
    kept = []
    for example in examples:
        if example.key not in seen:
            seen.add(example.key)
            kept.append(example)
    return kept


def change_keys(hunks: Iterable[Hunk]) -> set[str]:
    """What a set of hunks changed, whitespace aside: each hunk's added text and its
    (removed, added) pair, for `leaks`."""
    keys: set[str] = set()
    for h in hunks:
        added = _norm(h.new)
        if added:
            keys.add("+" + added)
        keys.add(f"{_norm(h.old)}\0{added}")
    return keys


def leaks(example: NextEditExample, earlier: set[str]) -> bool:
    """The example's target text (its added lines, or the change as a whole) was already
    written by an earlier commit (`earlier` from `change_keys`)."""
    if example.target is None:
        return False
    return bool(change_keys([example.target]) & earlier)
