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
cursor). The window is the server's own (`completion.next_edit_text.edit_window`,
`window_lines` lines around the cursor's; the original is the same lines
before the commit, mapped exactly through the applied hunks), so examples look
like the requests the server makes. Targets that only change whitespace, are
larger than `MAX_TARGET_LINES`, or undo an earlier hunk of the history are not
asked for. Where no hunk still to come touches the
window around the last one, nothing is due there: a "no edit" example;
`mix_no_edit` keeps enough of them for `NO_EDIT_SHARE` of a set. `leaks`
says whether a target's change was already made by an earlier commit (a
held-out example must not be one), and `dedupe` drops repeats. Every text is
passed through the secret redaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from lsp_server.completion.next_edit import EditWindow, NextEditRequest, RecentEdit
from lsp_server.completion.next_edit_text import edit_window
from lsp_server.measure.quality.metrics import normalize_whitespace
from lsp_server.repo.diffs import Commit, Hunk, apply_hunks, current_line, old_line
from lsp_server.repo.hunk_order import DEFAULT_ORDER, ORDERS
from lsp_server.repo.secrets import redact

WINDOW_LINES = 21  # Sweep's window: 10 lines above the cursor's, its line, 10 below
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
    commit: Commit,
    before: dict[str, str],
    order: str = DEFAULT_ORDER,
    window_lines: int = WINDOW_LINES,
) -> tuple[list[NextEditExample], list[NextEditExample]]:
    """(edit-due examples, "no edit" windows) of one commit, with `window_lines`-line
    windows, in the order of the hunks.

    A "no edit" window is the one around the end of the last hunk when none of
    the hunks still to come touches it: after the commit's last hunk, and after
    the last hunk of a file or of a part of one. `before` maps each changed
    file's path before the commit to its text; a file missing from it is left out.
    """
    texts: dict[str, list[str]] = {}
    for change in commit.files:
        source = "" if change.old_path is None else before.get(change.old_path)
        if change.new_path is not None and source is not None:
            texts[change.new_path] = source.split("\n")
    files = _Files(commit, before, texts, window_lines)
    hunks = ORDERS[order]([h for h in commit.hunks if h.path in texts])
    applied: list[Hunk] = []
    examples: list[NextEditExample] = []
    quiet: list[NextEditExample] = []
    for i, hunk in enumerate([*hunks, None]):
        if applied:
            spot = files.after(applied)
            window = files.window(spot, applied)
            if not any(_touches(window, h, applied) for h in hunks[i:] if h.path == spot.path):
                quiet.append(_redacted(commit.sha, spot, window, applied, None, NO_EDIT))
        if hunk is None:
            break
        if applied and _askable(hunk, applied):
            example = files.example(applied, hunk)
            examples += [example] if example is not None else []
        if apply_hunks(texts[hunk.path], _same_file(applied, hunk.path), hunk) is None:
            break  # the history does not line up with the text: stop here
        applied.append(hunk)
    # A stable subset where there are too many, kept in the order the user would ask
    # (each request's history extends the last one's, as the server's prefix cache sees it).
    kept = {e.key for e in sorted(examples, key=lambda e: e.key)[:MAX_PER_COMMIT]}
    return [e for e in examples if e.key in kept], quiet


@dataclass(frozen=True)
class _Spot:
    """A cursor: its file, its line and its offset in the file's text now."""

    path: str
    line: int
    offset: int


@dataclass(frozen=True)
class _Files:
    """A commit's files part-way through it, and the server's window over them."""

    commit: Commit
    before: dict[str, str]
    texts: dict[str, list[str]]  # each file's lines now (hunks applied in place)
    window_lines: int

    def spot(self, path: str, line: int, column: int) -> _Spot:
        lines = self.texts[path]
        offset = sum(len(x) + 1 for x in lines[:line]) + column
        return _Spot(path, line, min(offset, len("\n".join(lines))))

    def after(self, applied: Sequence[Hunk]) -> _Spot:
        """Where the user leaves the cursor after typing the last hunk: at its end."""
        last = applied[-1]
        at = current_line(_same_file(applied[:-1], last.path), last.old_start)
        column = len(last.new[-1]) if last.new else 0
        return self.spot(last.path, at + max(len(last.new), 1) - 1, column)

    def window(self, spot: _Spot, applied: Sequence[Hunk]) -> EditWindow:
        """The window the server would show the model (`edit_window`); its original is
        the same lines before the commit, mapped through the applied hunks (exact, where
        the server aligns by a line diff that takes a whole large change)."""
        change = next(f for f in self.commit.files if f.new_path == spot.path)
        before = self.before.get(change.old_path, "") if change.old_path else ""
        current = "\n".join(self.texts[spot.path])
        window = edit_window(current, current, spot.offset, self.window_lines)
        mine = _same_file(applied, spot.path)
        end = window.start_line + len(window.current.splitlines(keepends=True))
        lines = [x + "\n" for x in before.split("\n")]  # git's lines: "\n" ends them
        lines[-1] = lines[-1][:-1]
        start, stop = old_line(mine, window.start_line), old_line(mine, end, end=True)
        return replace(window, original="".join(lines[start:stop]))

    def example(self, applied: Sequence[Hunk], target: Hunk) -> NextEditExample | None:
        """The example asking for `target`: the cursor where the last hunk left it if the
        target is in that window, else at the target; None if it fits in neither."""
        start = current_line(_same_file(applied, target.path), target.old_start)
        spots = [self.after(applied)] if applied[-1].path == target.path else []
        for spot in [*spots, self.spot(target.path, start, 0)]:
            window = self.window(spot, applied)
            lines = window.current.splitlines(keepends=True)
            at = start - window.start_line
            old = [x.removesuffix("\n") for x in lines[at : at + len(target.old)]]
            if 0 <= at <= len(lines) and old == list(target.old):
                new = [x + "\n" for x in target.new]
                expected = "".join([*lines[:at], *new, *lines[at + len(target.old) :]])
                category = _category(target, start, spot.line)
                return _redacted(self.commit.sha, spot, window, applied, expected, category, target)
        return None


def _touches(window: EditWindow, hunk: Hunk, applied: Sequence[Hunk]) -> bool:
    """`hunk` (still to come) changes or inserts lines inside `window`."""
    start = current_line(_same_file(applied, hunk.path), hunk.old_start)
    first = window.start_line
    last = first + len(window.current.splitlines())
    if not hunk.old:
        return first <= start <= last
    return start < last and start + len(hunk.old) > first


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


def _category(target: Hunk, start: int, line: int) -> str:
    end = start + len(target.old)
    if start <= line < end or (start == end == line):
        return "at"
    return "below" if start > line else "above"


def _redacted(
    sha: str,
    spot: _Spot,
    window: EditWindow,
    applied: Sequence[Hunk],
    expected: str | None,
    category: str,
    target: Hunk | None = None,
) -> NextEditExample:
    """The example with every text through the secret redaction (the cursor kept in place)."""
    path = spot.path
    head, _ = redact(window.current[: window.cursor], path)
    tail, _ = redact(window.current[window.cursor :], path)
    history = tuple(
        RecentEdit(h.path, redact("\n".join(h.old), h.path)[0], redact("\n".join(h.new), h.path)[0])
        for h in applied[-MAX_HISTORY:]
    )
    original = redact(window.original, path)[0]
    clean = EditWindow(window.start_line, original, head + tail, len(head))
    written = clean.current if expected is None else redact(expected, path)[0]
    request = NextEditRequest(path, history, clean)
    return NextEditExample(sha, request, written, category, target)


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
