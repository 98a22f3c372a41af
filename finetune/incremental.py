"""Incremental training: update an adapter with what is new since it was trained.

When `--out` holds an adapter that `finetune` trained on this repository (its
recorded commit is an ancestor of HEAD) with this run's base model and LoRA
settings, `codetailor finetune REPO` updates it instead of starting over
(`incremental`: auto; `--incremental` insists, `--from-scratch` never). The
update starts from that adapter's weights and trains on:
- the training files changed since its commit (committed since, or edited in
  the work tree after it read the files), as fill-in-the-middle examples;
- the next-edit examples of the commits that crossed the temporal cut since the
  newest commit it learned from (`history_through` in its metadata);
- a replay sample of the old data, `replay_share` of the training tokens: rows
  of the unchanged files and next-edit examples of earlier commits, drawn at
  random (seeded), so the update does not forget what the adapter knew.
Nothing new: one line, exit 0, nothing written (`NothingNew`).

Every git call goes through `lsp_server.repo.git`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.init_adapter import shape_mismatch
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import AdapterMeta, has_meta, read_meta
from lsp_server.repo.diffs import Commit
from lsp_server.repo.git import run_git
from lsp_server.repo.history import MIN_COMMITS, History, mine

AUTO, ON, OFF = "auto", "on", "off"
MODES = (AUTO, ON, OFF)


class NothingNew(Exception):
    """The adapter at OUT already knows everything the repository holds: not an error."""


@dataclass
class Since:
    """The adapter being updated, and what is new in the repository since it was trained."""

    adapter: Path
    meta: AdapterMeta
    commit: str  # the commit whose files it read
    history_through: str | None  # the newest commit its next edits came from
    changed: frozenset[str]  # paths changed since it read the files
    history: History | None
    new_commits: list[Commit]  # kept commits before today's cut that it has not learned
    old_commits: list[Commit]  # kept commits before the cut that it learned from (replay)

    def split_files(self, files: Sequence[Any]) -> tuple[list[Any], list[Any]]:
        """(changed, unchanged) of `files` (anything with a `path`)."""
        new = [f for f in files if f.path in self.changed]
        return new, [f for f in files if f.path not in self.changed]

    def stats(self) -> dict[str, Any]:
        return {
            "adapter": str(self.adapter),
            "since_commit": self.commit,
            "history_through": self.history_through,
            "changed_paths": len(self.changed),
            "new_commits": len(self.new_commits),
        }


def find_since(
    cfg: FinetuneConfig, repo: Path, out: Path, say: Callable[[str], None]
) -> Since | None:
    """What an incremental run would update and train on; None for a run from scratch
    (with a line saying why, where OUT holds an adapter that cannot be updated)."""
    if cfg.incremental == OFF or not has_meta(out):
        if cfg.incremental == ON:
            raise CodetailorError(f"--incremental: {out} holds no adapter to update")
        return None
    meta = read_meta(out)
    assert meta is not None
    why, since = _since(cfg, repo, out, meta)
    if why is None:
        return since
    if cfg.incremental == ON:
        raise CodetailorError(f"--incremental: {why}")
    say(f"codetailor finetune: training from scratch: {why}")
    return None


def _since(
    cfg: FinetuneConfig, repo: Path, out: Path, meta: AdapterMeta
) -> tuple[str | None, Since | None]:
    """(why not, None) or (None, what is new since the adapter at `out`)."""
    from lsp_server.model.registry import base_name, same_base

    commit = meta.repository.get("commit")
    if not commit:
        return f"the adapter in {out} records no commit", None
    trained = meta.base_model.name if meta.base_model else None
    if not trained or not same_base(trained, base_name(cfg.model)):
        return f"the adapter in {out} was trained for {trained}, not {cfg.model}", None
    shape = shape_mismatch(meta, cfg)
    if shape is not None:
        return f"the adapter in {out} has {shape}", None
    if run_git(repo, "merge-base", "--is-ancestor", commit, "HEAD") is None:
        return f"the adapter in {out} was trained on a commit ({commit[:12]}) not in {repo}", None
    through = meta.repository.get("history_through") or commit
    history, new, old = _commits(cfg, repo, through)
    changed = changed_paths(repo, commit, _read_at(meta))
    return None, Since(out, meta, commit, through, changed, history, new, old)


def _commits(
    cfg: FinetuneConfig, repo: Path, through: str
) -> tuple[History | None, list[Commit], list[Commit]]:
    """(history, new, old): the kept commits before today's temporal cut that come after
    `through` and those at or before it; no history where next edits are off or the
    history is too short to teach them (as a run from scratch decides)."""
    if not cfg.next_edit:
        return None, [], []
    try:
        history = mine(repo)
    except CodetailorError:
        return None, [], []
    if len(history.kept) < MIN_COMMITS:
        return None, [], []
    earlier, _ = history.split(cfg.holdout)
    listed = run_git(repo, "rev-list", "--first-parent", through)
    learned = set(listed.decode().split()) if listed else set()
    old = [c for c in earlier if c.sha in learned]
    return history, [c for c in earlier if c.sha not in learned], old


def changed_paths(repo: Path, commit: str, read_at: float | None) -> frozenset[str]:
    """Paths changed since `commit`: in the commits after it, and in the work tree
    (edited, staged or untracked) after `read_at` (a time; None: every such path)."""
    committed = _names(run_git(repo, "diff", "--name-only", "-z", "--no-renames", commit, "HEAD"))
    work = _names(run_git(repo, "diff", "--name-only", "-z", "--no-renames", "HEAD"))
    work |= _names(run_git(repo, "ls-files", "-z", "--others", "--exclude-standard"))
    touched = {p for p in work if read_at is None or _mtime(repo / p) > read_at}
    return frozenset(committed | touched)


def replay_rows(lengths: Sequence[int], tokens: int, seed: int) -> list[int]:
    """Rows drawn at random (seeded) from a set whose rows hold `lengths` tokens, until
    they hold `tokens` tokens (all of them, where the set holds fewer)."""
    order = list(range(len(lengths)))
    random.Random(f"replay:{seed}").shuffle(order)
    picked, total = [], 0
    for row in order:
        if total >= tokens:
            break
        picked.append(row)
        total += lengths[row]
    return sorted(picked)


def shuffled(commits: Sequence[Commit], seed: int) -> list[Commit]:
    """`commits` in a seeded random order, for drawing a replay sample of their examples."""
    out = list(commits)
    random.Random(f"replay-commits:{seed}").shuffle(out)
    return out


def _names(out: bytes | None) -> set[str]:
    return {n for n in (out or b"").decode("utf-8", "surrogateescape").split("\0") if n}


def _mtime(path: Path) -> float:
    try:
        return os.lstat(path).st_mtime
    except OSError:
        return 0.0  # deleted: nothing to train on


def _read_at(meta: AdapterMeta) -> float | None:
    """When the adapter's run read the files (its end, for adapters that did not say)."""
    stamp = meta.repository.get("files_read_at") or meta.created
    try:
        return datetime.fromisoformat(stamp).timestamp() if stamp else None
    except ValueError:
        return None
