"""Next-edit text rules: the window around the cursor, when a rewrite is done, and which
rewrites may be shown.

- `edit_window`: the lines around the cursor now, and the same lines in the
  original text (git HEAD, or the text when opened), aligned by a line diff.
- `rewrite_end`: the stop rule of the window rewrite. The model copies the current
  window almost everywhere; once its output has reproduced the rest of the window
  (it wrote the end marker, reached the window's last lines, or, after a change,
  lines up again with the unchanged window for `RESYNC_LINES` lines), the updated
  window is known and generation stops.
- `settle`: the answer for an updated window: no edit when it equals the current
  one, holds a format marker (never shown), or reverts the user's last edit.

Pure: no pygls, no torch.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from lsp_server.completion.next_edit import (
    EditWindow,
    RecentEdit,
    WindowEdit,
    minimal_edit,
)

RESYNC_LINES = 2  # unchanged window lines after a change that end the rewrite
CHANGED_LINES_MAX = 8  # output lines past a change that never line up again: given up
# The most lines of the original a window's lines may stand for (times the window's).
ORIGINAL_LINES = 4
DIFF_LINES_MAX = 4000  # beyond this many differing lines, the original is aligned coarsely


def edit_window(original: str, current: str, offset: int, lines: int) -> EditWindow:
    """The `lines`-line window around `offset` in `current` (half above, half below the
    cursor's line, shifted to fit the text) and the lines of `original` it corresponds to."""
    cur = split_lines(current) or [""]
    row = current.count("\n", 0, offset)
    row = min(row, len(cur) - 1)
    above = max(lines - 1, 0) // 2
    start = max(0, min(row - above, len(cur) - lines))
    end = min(len(cur), start + max(lines, 1))
    orig = split_lines(original)
    o_start, o_end = _aligned(orig, cur, start, end)
    window_start = sum(len(line) for line in cur[:start])
    # A file changed too much to align (both ends, past DIFF_LINES_MAX) maps the window
    # to the whole change: then the window has no "before" worth a prompt's room.
    before = orig[o_start:o_end] if o_end - o_start <= ORIGINAL_LINES * max(lines, 1) else None
    return EditWindow(
        start_line=start,
        original="".join(cur[start:end] if before is None else before),
        current="".join(cur[start:end]),
        cursor=offset - window_start,
    )


def split_lines(text: str) -> list[str]:
    """`text` as lines split at `\n` only (as LSP counts them), each with its line break."""
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    return out + [lines[-1]] if lines[-1] else out


def _aligned(orig: list[str], cur: list[str], start: int, end: int) -> tuple[int, int]:
    """The lines of `orig` that lines [start, end) of `cur` came from."""
    head = 0
    while head < min(len(orig), len(cur)) and orig[head] == cur[head]:
        head += 1
    tail = 0
    while tail < min(len(orig), len(cur)) - head and orig[-1 - tail] == cur[-1 - tail]:
        tail += 1
    a, b = orig[head : len(orig) - tail], cur[head : len(cur) - tail]
    if len(a) + len(b) > DIFF_LINES_MAX:
        blocks = [(0, 0, 0), (len(a), len(b), 0)]
    else:
        matcher = difflib.SequenceMatcher(None, a, b, False)
        blocks = [(m.a, m.b, m.size) for m in matcher.get_matching_blocks()]

    def back(line: int, is_end: bool) -> int:
        local = line - head
        if local <= 0:
            return line
        if local >= len(b):
            return len(orig) - (len(cur) - line)
        for i, j, n in blocks:
            if j <= local < j + n or (is_end and j < local <= j + n):
                return head + i + (local - j)
        # inside a change: take all of it (the window's start before, its end after)
        before = [(i, j, n) for i, j, n in blocks if j + n <= local]
        after = [(i, j, n) for i, j, n in blocks if j >= local]
        if is_end:
            return head + (after[0][0] if after else len(a))
        return head + (before[-1][0] + before[-1][2] if before else 0)

    return back(start, False), max(back(start, False), back(end, True))


def _normalized(current: str) -> str:
    return current if current.endswith("\n") or not current else current + "\n"


def rewrite_end(current: str, output: str, end_marker: str) -> str | None:
    """The updated window once `output` (the model's text so far) settles it; None while
    the rest may still change."""
    if end_marker and end_marker in output:
        return _restore_end(current, output[: output.index(end_marker)])
    cur = split_lines(_normalized(current))
    out = split_lines(output[: output.rfind("\n") + 1])
    diverged = next((i for i, (a, b) in enumerate(zip(out, cur, strict=False)) if a != b), None)
    if diverged is None:
        # the window reproduced to its end: no edit (an addition after it is not offered)
        return current if len(out) >= len(cur) else None
    m = len(out)
    for j in range(diverged, len(cur)):
        k = min(RESYNC_LINES, len(cur) - j)
        if m - k < diverged or out[m - k :] != cur[j : j + k]:
            continue
        if any(line.strip() for line in cur[j : j + k]):
            return _restore_end(current, "".join(out) + "".join(cur[j + k :]))
    return None


WHOLE_SLACK_LINES = 3  # an ended output this many lines off the window's length is no window


def ended_window(current: str, output: str) -> str | None:
    """The window a model wrote when it ended (EOS, a server's stop string) before the stop
    rule settled it: its whole output, if that is a plausible window (complete lines, as
    many as the window's within WHOLE_SLACK_LINES); None for anything else (an output cut
    short, or nothing at all, is no request to delete the window)."""
    if not output.endswith("\n"):
        return None
    lines, expected = output.count("\n"), _normalized(current).count("\n")
    if abs(lines - expected) > WHOLE_SLACK_LINES:
        return None
    return _restore_end(current, output)


def rewrite_hopeless(current: str, output: str) -> bool:
    """Whether the output has run CHANGED_LINES_MAX lines past its first change without
    lining up with the window again (a model writing something else): stop, no edit."""
    cur = split_lines(_normalized(current))
    out = split_lines(output[: output.rfind("\n") + 1])
    diverged = next((i for i, (a, b) in enumerate(zip(out, cur, strict=False)) if a != b), None)
    return diverged is not None and len(out) - diverged > CHANGED_LINES_MAX


def _restore_end(current: str, updated: str) -> str:
    """`updated` with the current window's ending: no final line break where it has none."""
    if current.endswith("\n") or not updated.endswith("\n"):
        return updated
    return updated[:-1]


def reverts(current: str, updated: str, last: RecentEdit | None) -> bool:
    """Whether `updated` undoes `last` (the user's last edit, lines `before` -> `after`)
    in `current`: some occurrence of `after` replaced by `before`, or the trimmed
    change removing exactly what the user inserted and putting back what they removed."""
    if last is None or last.before == last.after or current == updated:
        return False
    undo, mine = minimal_edit(current, updated), minimal_edit(last.before, last.after)
    if (
        undo is not None
        and mine is not None
        and (
            current[undo.start : undo.end] == mine.text
            and undo.text == (last.before[mine.start : mine.end])
        )
    ):
        return True
    before, after = last.before, last.after
    if len(updated) - len(current) != len(before) - len(after):
        return False
    head = _common_prefix(current, updated)
    tail = _common_prefix(current[::-1], updated[::-1])
    low, high = max(0, len(current) - len(after) - tail), min(head, len(current) - len(after))
    for i in range(low, high + 1):
        if current[i : i + len(after)] == after and updated[i : i + len(before)] == before:
            return True
    return False


def _common_prefix(a: str, b: str) -> int:
    n, i = min(len(a), len(b)), 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def settle(
    window: EditWindow,
    updated: str | None,
    history: Sequence[RecentEdit],
    sentinels: Sequence[str],
    layout_lines: Sequence[str] = (),
) -> tuple[WindowEdit | None, str]:
    """The edit to show for a rewrite, and why there is none ("" when there is one):
    "unfinished", "no_edit", "sentinel" (a marker, or a whole line of the prompt's own
    layout in `layout_lines`, that the window did not hold) or "reverts"."""
    if updated is None:
        return None, "unfinished"
    edit = minimal_edit(window.current, updated)
    if edit is None:
        return None, "no_edit"
    if any(s and (s in edit.text or updated.count(s) > window.current.count(s)) for s in sentinels):
        return None, "sentinel"
    if _layout_lines(updated, layout_lines) > _layout_lines(window.current, layout_lines):
        return None, "sentinel"
    if reverts(window.current, updated, history[-1] if history else None):
        return None, "reverts"
    return edit, ""


def _layout_lines(text: str, layout_lines: Sequence[str]) -> int:
    """How many of `text`'s lines are, stripped, one of the prompt layout's own lines."""
    wanted = set(layout_lines)
    return sum(1 for line in text.split("\n") if line.strip() in wanted) if wanted else 0
