"""A repository's git history as next-edit examples: the one miner for evaluation and training.

The I/O half; the rules are pure and live beside it (`diffs`: parsing and
patch ids, `commits`: which commits count and the temporal split,
`edit_examples`: hunk order, examples, "no edit" windows, leaks, dedupe).
`mine(root)` reads the first-parent, non-merge history oldest first in one
`git log` call and sorts the commits into kept and dropped (with the reason);
`History.split(holdout)` is the temporal split `codetailor eval --next-edit`
and `finetune` share; `History.examples(commits, held_out=...)` reads each
commit's files as they were before it and builds the examples (held-out ones
never repeat a change made by an earlier commit).

Every git call goes through `lsp_server.repo.git.run_git`, the one safe way to
run git on a user's folder.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lsp_server.errors import CodetailorError
from lsp_server.repo import commits as rules
from lsp_server.repo.diffs import LOG_ARGS, Commit, parse_log
from lsp_server.repo.edit_examples import (
    WINDOW_LINES,
    NextEditExample,
    change_keys,
    commit_examples,
    dedupe,
    leaks,
    mix_no_edit,
)
from lsp_server.repo.files import skip_reason_for_text
from lsp_server.repo.git import run_git
from lsp_server.repo.hunk_order import DEFAULT_ORDER

LOG_TIMEOUT_S = 300.0
MAX_FILE_BYTES = 1024 * 1024  # a file before a commit larger than this is left out
MIN_COMMITS = 10  # fewer kept commits than this: too little history to split


@dataclass
class History:
    """The first-parent, non-merge commits of a repository (oldest first) and which count."""

    root: Path
    commits: list[Commit]
    reasons: list[str | None]
    kept: list[Commit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.kept = [
            rules.source_files(c)
            for c, why in zip(self.commits, self.reasons, strict=True)
            if why is None
        ]

    def dropped(self) -> dict[str, int]:
        """How many commits each rule dropped."""
        return dict(Counter(why for why in self.reasons if why))

    def split(self, holdout: float) -> tuple[list[Commit], list[Commit]]:
        """(earlier, held_out) kept commits: the newest `holdout` share held out."""
        return rules.temporal_split(self.kept, holdout)

    def examples(
        self,
        commits: Sequence[Commit],
        *,
        held_out: bool = False,
        order: str = DEFAULT_ORDER,
        window_lines: int = WINDOW_LINES,
        progress: Callable[[int], object] | None = None,
    ) -> list[NextEditExample]:
        """The examples of `commits` (kept ones, oldest first), `window_lines`-line
        windows as the server makes them, deduplicated, with
        `NO_EDIT_SHARE` "no edit" windows; with `held_out`, none whose target change
        an earlier commit (kept or not) already made."""
        wanted = {c.sha for c in commits}
        earlier: set[str] = set()
        edit_due: list[NextEditExample] = []
        no_edit: list[NextEditExample] = []
        for full, commit in zip(self.commits, self._kept_by_sha(), strict=True):
            if commit is not None and commit.sha in wanted:
                found, quiet = commit_examples(commit, self._before(commit), order, window_lines)
                edit_due += [e for e in found if not (held_out and leaks(e, earlier))]
                no_edit += quiet
                if progress:
                    progress(1)
            if held_out:
                earlier |= change_keys(full.hunks)
        return dedupe(mix_no_edit(dedupe(edit_due), dedupe(no_edit)))

    def _kept_by_sha(self) -> list[Commit | None]:
        kept = {c.sha: c for c in self.kept}
        return [kept.get(c.sha) for c in self.commits]

    def _before(self, commit: Commit) -> dict[str, str]:
        """Each changed file's text before `commit` (by its old path), where readable."""
        texts: dict[str, str] = {}
        for change in commit.files:
            if change.old_path is None or commit.parent is None:
                continue
            text = read_file_at(self.root, commit.parent, change.old_path)
            if text is not None and skip_reason_for_text(text) in (None, "empty"):
                texts[change.old_path] = text
        return texts


def read_file_at(root: Path, rev: str, path: str) -> str | None:
    """A file's text at a revision; None when missing, too large or not UTF-8."""
    data = run_git(root, "cat-file", "blob", f"{rev}:{path}")
    if data is None or len(data) > MAX_FILE_BYTES or b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def mine(root: Path) -> History:
    """The history of the git repository at `root`; a CodetailorError if there is none."""
    if run_git(root, "rev-parse", "--git-dir") is None:
        raise CodetailorError(f"{root} is not a git repository (next edits are mined from git)")
    out = run_git(root, *LOG_ARGS, "HEAD", timeout=LOG_TIMEOUT_S)
    if out is None:
        raise CodetailorError(f"git could not read the history of {root} (no commits yet?)")
    commits = parse_log(out.decode("utf-8", "surrogateescape"))
    return History(root, commits, rules.skip_reasons(commits))


def mine_split(root: Path, holdout: float) -> tuple[History, list[Commit], list[Commit]]:
    """`mine` and `History.split`, refusing a history too short to hold any out."""
    history = mine(root)
    if len(history.kept) < MIN_COMMITS:
        raise CodetailorError(
            f"{root} has {len(history.kept)} commits that teach edits "
            f"(of {len(history.commits)}); at least {MIN_COMMITS} are needed"
        )
    earlier, held = history.split(holdout)
    return history, earlier, held
