"""Score a completer on HumanEval single-line infilling: exact match, pass@1, latency."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lsp_server.measure.quality.execution import run_tests
from lsp_server.measure.quality.humaneval import LineTask, build_line_tasks, load_problems
from lsp_server.measure.quality.metrics import edit_similarity, exact_match, percentile


@dataclass(frozen=True)
class TaskResult:
    task_id: str
    prediction: str
    target: str
    exact: bool
    similarity: float
    passed: bool
    latency_ms: float


def sample_tasks(tasks: list[LineTask], samples: int | None, seed: int) -> list[LineTask]:
    """`samples` tasks drawn with `seed` (all when None or too many), in dataset order.

    Dataset order keeps the tasks of one problem together, so consecutive
    prompts share their beginning, as they do while a user edits one file.
    """
    if samples is None or samples >= len(tasks):
        return list(tasks)
    chosen = sorted(random.Random(seed).sample(range(len(tasks)), samples))
    return [tasks[i] for i in chosen]


def evaluate_humaneval_line(
    complete: Callable[[str, int], tuple[str, float]],
    *,
    samples: int | None = None,
    seed: int = 0,
    timeout: float = 10.0,
    progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, Any], list[TaskResult]]:
    """Run `complete(text, offset) -> (completion, latency_ms)` on the sampled tasks.

    The cursor stands at the start of the masked line, which is removed from
    the text; the completion is scored against the line and by running the
    problem's tests on the filled-in program.
    """
    tasks = sample_tasks(build_line_tasks(load_problems()), samples, seed)
    results = []
    unscored = ""  # why programs were not run (no sandbox): then pass@1 is not reported
    for task in tasks:
        text = task.prefix + "\n" + task.suffix
        prediction, latency = complete(text, len(task.prefix))
        outcome = run_tests(task.program(prediction), task.test, task.entry_point, timeout)
        if outcome.status == "unscored":
            unscored = outcome.detail
        results.append(
            TaskResult(
                task_id=task.task_id,
                prediction=prediction,
                target=task.target,
                exact=exact_match(prediction, task.target),
                similarity=edit_similarity(prediction, task.target),
                passed=outcome.passed,
                latency_ms=latency,
            )
        )
        if progress:
            progress(1)
    n = max(len(results), 1)
    latencies = [r.latency_ms for r in results]
    summary = {
        "benchmark": "humaneval-line",
        "samples": len(results),
        "seed": seed,
        "exact_match": round(sum(r.exact for r in results) / n, 4),
        "pass_at_1": None if unscored else round(sum(r.passed for r in results) / n, 4),
        "edit_similarity": round(sum(r.similarity for r in results) / n, 4),
        "latency_ms_p50": round(percentile(latencies, 50), 1),
        "latency_ms_p95": round(percentile(latencies, 95), 1),
    }
    if unscored:
        summary["pass_at_1_note"] = unscored
    return summary, results


def paired(base: list[TaskResult], tuned: list[TaskResult], *, seed: int = 0) -> dict[str, Any]:
    """Task by task, the base model's results against the adapter's on the same tasks:
    how many each got right that the other missed (exact match, and the tests where they
    ran), the exact sign test on those, and a 95% bootstrap interval of the difference in
    exact match (tasks drawn with replacement, 2,000 draws)."""
    from lsp_server.measure.offline_user import sign_test

    if [r.task_id for r in base] != [r.task_id for r in tuned]:
        raise ValueError("paired results must be of the same tasks, in the same order")
    report: dict[str, Any] = {"tasks": len(base)}
    for name, key in (("exact", "exact"), ("passed", "passed")):
        pairs = [(getattr(b, key), getattr(t, key)) for b, t in zip(base, tuned, strict=True)]
        gained = sum(t and not b for b, t in pairs)
        lost = sum(b and not t for b, t in pairs)
        report[name] = {
            "both": sum(b and t for b, t in pairs),
            "adapter_only": gained,
            "base_only": lost,
            "sign_test_p": round(sign_test(gained, lost), 4),
        }
    diffs = [int(t.exact) - int(b.exact) for b, t in zip(base, tuned, strict=True)]
    report["exact_match_difference"] = round(sum(diffs) / max(len(diffs), 1), 4)
    report["exact_match_difference_95"] = _bootstrap_mean(diffs, seed)
    return report


def _bootstrap_mean(values: list[int], seed: int, draws: int = 2000) -> list[float] | None:
    """The 2.5th and 97.5th percentiles of the mean of `values` resampled with replacement."""
    if not values:
        return None
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choices(values, k=n)) / n for _ in range(draws))
    return [round(means[int(0.025 * draws)], 4), round(means[int(0.975 * draws) - 1], 4)]
