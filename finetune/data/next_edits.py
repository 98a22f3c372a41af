"""Next-edit training examples from a repository's git history.

The examples are the ones `codetailor eval --next-edit` scores, from the same
miner (`lsp_server.repo.history`: kept commits, hunk order, "no edit" windows,
reverting targets dropped, deduplicated) over the commits before the temporal
cut the evaluation holds out. This module adds what only training needs:
- some edit-due examples shown with the next edit partly typed (`partly_typed`:
  the user has begun the change and stopped at a natural pause, the cursor
  there; the typing is the latest recent edit, as the server would record it);
- the layout: the predictor's own prompt and history budget
  (`lsp_server.model.next_edit.training_pair`, `fit_history`), the target being
  the window as it will be, ended by the format's end marker;
- a token budget: commits are read newest first (the code most like today's)
  until the examples hold `budget` tokens, or until the share of the run's time
  budget that reading them may take is spent (`stop`), so a long history trains
  in the time the user chose.

Pure apart from the miner's git reads.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from lsp_server.completion.next_edit import EditWindow, RecentEdit, minimal_edit
from lsp_server.completion.next_edit_prompt import NextEditFormat
from lsp_server.model.engine import common_prefix_length
from lsp_server.model.next_edit import fit_history, training_pair
from lsp_server.repo.diffs import Commit
from lsp_server.repo.edit_examples import MAX_HISTORY, NextEditExample
from lsp_server.repo.history import History

COMMITS_PER_ROUND = 32  # commits mined between two looks at the budget
# Where a typist pauses: after a separator, before the next word starts.
_PAUSE = re.compile(r"(?<=[\s(\[{,.:=])(?=\S)")

Encode = Callable[[str], list[int]]


@dataclass(frozen=True)
class NextEditSet:
    """The tokenized examples and what they hold."""

    pairs: list[tuple[list[int], list[int]]]  # (prompt ids, target ids)
    commits: list[str]  # the commit each pair comes from
    edit_due: int
    no_edit: int
    partly_typed: int
    dropped_too_long: int
    commits_read: int
    commits_before_cut: int

    @property
    def tokens(self) -> int:
        return sum(len(p) + len(t) for p, t in self.pairs)

    def stats(self) -> dict[str, int]:
        return {
            "next_edit_examples": len(self.pairs),
            "next_edit_edit_due": self.edit_due,
            "next_edit_no_edit": self.no_edit,
            "next_edit_partly_typed": self.partly_typed,
            "next_edit_dropped_too_long": self.dropped_too_long,
            "next_edit_commits_read": self.commits_read,
            "next_edit_commits_before_cut": self.commits_before_cut,
            "next_edit_tokens": self.tokens,
        }


def combine(first: NextEditSet, second: NextEditSet) -> NextEditSet:
    """Both sets' examples (`first`'s, then `second`'s) and counts."""
    return NextEditSet(
        first.pairs + second.pairs,
        first.commits + second.commits,
        edit_due=first.edit_due + second.edit_due,
        no_edit=first.no_edit + second.no_edit,
        partly_typed=first.partly_typed + second.partly_typed,
        dropped_too_long=first.dropped_too_long + second.dropped_too_long,
        commits_read=first.commits_read + second.commits_read,
        commits_before_cut=first.commits_before_cut + second.commits_before_cut,
    )


@dataclass(frozen=True)
class Layout:
    """How the server asks: the format, its tokenizer, the window and history budget."""

    fmt: NextEditFormat
    encode: Encode
    window_lines: int
    history_tokens: int
    max_tokens: int  # an example (prompt + target) longer than this is left out


def partly_typed(example: NextEditExample, rng: random.Random) -> NextEditExample | None:
    """`example` with its change begun: the old text of the change removed and the new
    typed up to a natural pause (None where the change has no such pause)."""
    current, expected = example.request.window.current, example.expected
    change = minimal_edit(current, expected)
    if change is None:
        return None
    start, end, new = change.start, len(current) - change.end, change.text
    pauses = [m.start() for m in _PAUSE.finditer(new) if 0 < m.start() < len(new)]
    if not pauses:
        return None
    typed = rng.choice(pauses)
    now = current[:start] + new[:typed] + current[len(current) - end :]
    window = example.request.window
    edit = _line_change(example.request.path, current, now)
    history = (*example.request.history, edit)[-MAX_HISTORY:]
    moved = EditWindow(window.start_line, window.original, now, start + typed)
    request = replace(example.request, history=history, window=moved)
    return replace(example, request=request, category="at")


def build(
    history: History,
    commits: Sequence[Commit],
    layout: Layout,
    *,
    budget: int,
    partial_rate: float,
    seed: int,
    progress: Callable[[int], object] | None = None,
    stop: Callable[[], bool] | None = None,
) -> NextEditSet:
    """The examples of `commits` (kept ones, oldest first: those before the cut),
    tokenized, newest commits first until they hold `budget` tokens or `stop` says the
    time for reading them is up (a time budget's share); `partial_rate` of the edit-due
    ones shown partly typed instead. Returned newest commit last."""
    chosen: list[tuple[list[int], list[int]]] = []
    sources: list[str] = []
    counts = {"due": 0, "none": 0, "partial": 0, "long": 0}
    seen: set[str] = set()
    used = read = 0
    newest_first = list(reversed(commits))
    while used < budget and read < len(newest_first) and not (stop and read and stop()):
        chunk = newest_first[read : read + COMMITS_PER_ROUND][::-1]
        read += len(chunk)
        found = history.examples(chunk, window_lines=layout.window_lines, progress=progress)
        batch, shas = [], []
        # Newest commit first within the chunk too, so the budget cuts the oldest off (the
        # miner lists the "no edit" windows last; by commit they stay mixed in).
        age = {c.sha: i for i, c in enumerate(chunk)}
        mixed = _with_partial(found, partial_rate, seed)
        for example, kind in sorted(mixed, key=lambda item: -age.get(item[0].commit, 0)):
            if example.key in seen:
                continue
            seen.add(example.key)
            pair = _pair(layout, example)
            if pair is None:
                counts["long"] += 1
                continue
            batch.append(pair)
            shas.append(example.commit)
            counts[kind] += 1
            used += len(pair[0]) + len(pair[1])
            if used >= budget:
                break
        chosen, sources = batch[::-1] + chosen, shas[::-1] + sources  # older than before
    return NextEditSet(
        chosen,
        sources,
        edit_due=counts["due"] + counts["partial"],
        no_edit=counts["none"],
        partly_typed=counts["partial"],
        dropped_too_long=counts["long"],
        commits_read=read,
        commits_before_cut=len(commits),
    )


def _with_partial(
    examples: Sequence[NextEditExample], rate: float, seed: int
) -> list[tuple[NextEditExample, str]]:
    """Each example with its kind: "none" (no edit due), "due", or "partial" where an
    edit-due one drew (by its own seeded draw) to be partly typed instead. Replacing
    keeps the miner's share of "no edit" windows."""
    out: list[tuple[NextEditExample, str]] = []
    for example in examples:
        rng = random.Random(f"{seed}:{example.key}")
        typed = None
        if example.edit_due and rng.random() < rate:
            typed = partly_typed(example, rng)
        if typed is not None:
            out.append((typed, "partial"))
        else:
            out.append((example, "due" if example.edit_due else "none"))
    return out


def _pair(layout: Layout, example: NextEditExample) -> tuple[list[int], list[int]] | None:
    """The example as the predictor would send it (history cut to its budget) and the
    window to write; None when longer than `layout.max_tokens`."""
    request = example.request
    kept = fit_history(request.history, layout.fmt, layout.encode, layout.history_tokens)
    prompt, target = training_pair(
        replace(request, history=kept), example.expected, layout.fmt, layout.encode
    )
    return (prompt, target) if len(prompt) + len(target) <= layout.max_tokens else None


def _line_change(path: str, before: str, after: str) -> RecentEdit:
    """The lines that differ between two texts of a window, as one recent edit."""
    old, new = before.split("\n"), after.split("\n")
    top = common_prefix_length(old, new)
    bottom = common_prefix_length(old[top:][::-1], new[top:][::-1])
    return RecentEdit(
        path, "\n".join(old[top : len(old) - bottom]), "\n".join(new[top : len(new) - bottom])
    )
