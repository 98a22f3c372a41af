"""What `codetailor finetune` writes for the person running it: the progress stream,
the one-line data summary, and lines that must not cost the run.

Progress and messages go to stderr. When that stream is a pipe whose reader is
gone (`2>&1 | tee log` and Ctrl-C: the signal stops `tee` too), a write raises
`BrokenPipeError`; in the training loop that used to end the run before the
checkpoint that the signal asked for was saved. `Quiet` swallows such errors,
so losing the display never loses training.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class Quiet:
    """A text stream whose writes never raise: once the reader is gone, it writes nothing."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                self.stream.write(text)
            except (OSError, ValueError):  # BrokenPipeError, or a closed stream
                self.broken = True
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self.broken = True

    def isatty(self) -> bool:
        try:
            return not self.broken and self.stream.isatty()
        except (OSError, ValueError):
            return False

    def fileno(self) -> int:
        return self.stream.fileno()


def say(line: str, stream: TextIO | None = None) -> None:
    """Print one line to stderr (or `stream`); a reader that is gone costs nothing."""
    out = Quiet(stream if stream is not None else sys.stderr)
    out.write(line + "\n")
    out.flush()


def data_line(
    stats: dict[str, Any], total_steps: int, seq_len: int, budget_minutes: float | None = None
) -> str:
    """One line: which files, how many examples and tokens, what is held out, how many steps
    (and for an incremental run, what is new and what is replayed)."""
    skipped = sum(dict(stats.get("skipped") or {}).values())
    redacted = sum(dict(stats.get("redactions") or {}).values())
    parts = [
        f"{stats['files_kept']} files" + (f" ({skipped} skipped)" if skipped else ""),
        f"{stats['train_files']} to train on: {stats['train_sequences']} examples of up to "
        f"{seq_len} tokens ({stats['train_tokens']:,} tokens)",
        f"{stats['heldout_files']} held out ({stats['heldout_tokens']:,} tokens)"
        if stats["heldout_files"]
        else "none held out",
        f"{total_steps} step{'' if total_steps == 1 else 's'}"
        + (
            f" at most, planned to the {budget_minutes:g}-minute budget after the first few"
            if budget_minutes
            else ""
        ),
    ]
    if stats.get("next_edit_examples"):
        parts.insert(
            2,
            f"next edits: {stats['next_edit_examples']} examples from "
            f"{stats['next_edit_commits_read']} commits before the cut "
            f"({stats['next_edit_tokens']:,} tokens; {stats['next_edit_no_edit']} no-edit, "
            f"{stats['next_edit_partly_typed']} partly typed)",
        )
    update = stats.get("incremental")
    if update:
        parts.insert(
            0,
            f"an update of {update['adapter']} since {str(update['since_commit'])[:12]}: "
            f"{update['changed_train_files']} changed training files and "
            f"{update['new_commits']} new commits ({update['new_tokens']:,} tokens), plus "
            f"{update['replay_tokens']:,} tokens replayed from the old data",
        )
    line = "data: " + "; ".join(parts)
    return line + (f"; {redacted} secrets redacted" if redacted else "")
