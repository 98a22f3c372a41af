"""The order of the hunks inside a commit, which git does not record.

Pure. Git records no order of the hunks inside a commit; `ORDERS` holds two.
`nearest` (the default) starts with the largest hunk and then always goes on
with the nearest remaining one, same file first: people make the change the
rest follows from (a signature, a body) and then fix what is around it, the
imports above and the uses below, the way a cursor moves; it is also the only
one of the two that asks for edits above the cursor. `file` takes git's file
order (by path) and each file top to bottom, the order a reviewer reads a
diff in (the Next Edit Prediction paper predicts a commit's last chunk in this
order); it never puts a target above the cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lsp_server.repo.diffs import Hunk


def order_file(hunks: Sequence[Hunk]) -> list[Hunk]:
    """Git's file order, then top to bottom within each file."""
    paths = list(dict.fromkeys(h.path for h in hunks))
    return sorted(hunks, key=lambda h: (paths.index(h.path), h.old_start))


def order_nearest(hunks: Sequence[Hunk]) -> list[Hunk]:
    """The largest hunk first (the change the rest follows from), then always the nearest
    remaining one, same file first: the way a cursor moves from the main change to the
    imports above it and the uses below it."""
    left = order_file(hunks)
    if not left:
        return []
    ordered = [max(left, key=lambda h: h.size)]
    left.remove(ordered[0])
    while left:
        last = ordered[-1]
        nearest = min(left, key=lambda h: (h.path != last.path, abs(h.old_start - last.old_start)))
        left.remove(nearest)
        ordered.append(nearest)
    return ordered


ORDERS: dict[str, Callable[[Sequence[Hunk]], list[Hunk]]] = {
    "nearest": order_nearest,
    "file": order_file,
}
DEFAULT_ORDER = "nearest"
