"""Which commits of a history teach next edits, and the temporal split.

Pure (no I/O). A commit is kept unless it is noise for learning how people
edit: a bot's, a revert (by its message, or because it undoes an earlier
commit's patch id), a cherry-pick (its patch id is an earlier commit's), only
renames, no source file left once the repository lister's rules drop
vendored, generated, lock and binary files, only whitespace (`git diff -w`
would be empty), or bulk (more files or changed lines than a person edits by
hand in one go). `skip_reasons` says which rule dropped each commit;
`temporal_split` holds out the newest share of the kept ones, so a model is
always scored on commits after the ones it could have learned from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import replace

from lsp_server.repo.diffs import Commit, FileChange, patch_id
from lsp_server.repo.files import skip_reason_for_path

BULK_FILES = 20  # more source files than this in one commit: bulk
BULK_LINES = 400  # more changed source lines (removed + added) than this: bulk
_BOT = re.compile(
    r"\[bot\]|(?:^|[\W_])bot(?:$|[\W_])|dependabot|renovate|pre-commit-ci|github-actions"
    r"|greenkeeper|snyk-bot|allcontributors|imgbot|weblate",
    re.IGNORECASE,
)
_REVERT = re.compile(r'^Revert\b|^Reapply "|\bThis reverts commit [0-9a-f]{7,}', re.MULTILINE)


def is_bot(commit: Commit) -> bool:
    """An automated author (dependabot, renovate, pre-commit.ci, any `[bot]`)."""
    return bool(_BOT.search(commit.author_name) or _BOT.search(commit.author_email))


def source_files(commit: Commit) -> Commit:
    """`commit` with only the file changes worth learning from: text files the repository
    lister would read (not vendored, generated or lock files), not deleted, with hunks."""
    kept = tuple(f for f in commit.files if _keep_file(f))
    return replace(commit, files=kept)


def _keep_file(change: FileChange) -> bool:
    if change.binary or change.new_path is None or not change.hunks:
        return False
    if skip_reason_for_path(change.new_path) is not None:
        return False
    # Bytes that are not UTF-8 were decoded as surrogates: not text to learn from.
    return not any(_undecodable(line) for h in change.hunks for line in (*h.old, *h.new))


def _undecodable(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def skip_reasons(commits: Sequence[Commit]) -> list[str | None]:
    """For each commit (oldest first), why it is dropped, or None to keep it.

    The reasons: `bot`, `revert`, `cherry_pick`, `rename_only`, `no_source`,
    `formatting_only`, `bulk`. Patch ids are compared with every earlier
    commit, kept or not.
    """
    seen: set[str] = set()
    reasons: list[str | None] = []
    for commit in commits:
        pid = patch_id(commit.files)
        reasons.append(_reason(commit, pid, seen))
        if commit.hunks:
            seen.add(pid)
    return reasons


def _reason(commit: Commit, pid: str, seen: set[str]) -> str | None:
    if is_bot(commit):
        return "bot"
    if _REVERT.search(f"{commit.subject}\n{commit.body}"):
        return "revert"
    if commit.hunks and pid in seen:  # checked first: a change made again is a cherry-pick
        return "cherry_pick"
    if commit.hunks and patch_id(commit.files, reverse=True) in seen:
        return "revert"
    if commit.files and not commit.hunks and all(f.renamed for f in commit.files):
        return "rename_only"
    kept = source_files(commit)
    if not kept.files:
        return "no_source"
    if all(h.whitespace_only for h in kept.hunks):
        return "formatting_only"
    if len(kept.files) > BULK_FILES or sum(h.size for h in kept.hunks) > BULK_LINES:
        return "bulk"
    return None


def eligible(commits: Sequence[Commit]) -> list[Commit]:
    """The kept commits, oldest first, each with its source file changes only."""
    return [
        source_files(c) for c, why in zip(commits, skip_reasons(commits), strict=True) if not why
    ]


def temporal_split(commits: Sequence[Commit], holdout: float) -> tuple[list[Commit], list[Commit]]:
    """(earlier, held_out): the newest `holdout` share of `commits` (oldest first) held out,
    at least one where there are two or more and `holdout` > 0."""
    if holdout <= 0 or len(commits) < 2:
        return list(commits), []
    held = min(max(1, math.ceil(len(commits) * holdout)), len(commits) - 1)
    return list(commits[:-held]), list(commits[-held:])
