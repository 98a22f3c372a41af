"""Quality metrics, the HumanEval line-infilling tasks and the sandboxed scorer."""

from __future__ import annotations

import pytest

from lsp_server.measure.quality.execution import run_tests
from lsp_server.measure.quality.humaneval import build_line_tasks, load_problems
from lsp_server.measure.quality.metrics import (
    edit_similarity,
    exact_match,
    line_cut,
    next_line_exact_match,
    next_lines,
    normalize_whitespace,
    percentile,
)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("return a + b", "return a + b", True),
        ("return  a +\tb  ", "return a + b", True),
        ("return a+b", "return a + b", False),
        ("", "", True),
        ("x", "", False),
    ],
)
def test_exact_match_normalises_whitespace(prediction, reference, expected) -> None:
    assert exact_match(prediction, reference) is expected


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("abc", "abc", 1.0),
        ("", "", 1.0),
        ("", "abcd", 0.0),
        ("abcd", "abce", 0.75),  # one substitution over 4 characters
        ("kitten", "sitting", 1 - 3 / 7),
        ("  abc\n", "abc", 1.0),  # ends are stripped
    ],
)
def test_edit_similarity(prediction, reference, expected) -> None:
    assert edit_similarity(prediction, reference) == pytest.approx(expected)


def test_normalize_and_percentile() -> None:
    assert normalize_whitespace(" a \n\t b ") == "a b"
    assert percentile([], 50) == 0.0
    assert percentile([3.0], 95) == 3.0
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([1, 2, 3, 4, 5], 100) == 5
    assert percentile(range(101), 95) == 95


def test_percentile_is_linear_interpolation_between_closest_ranks() -> None:
    # numpy's default (Hyndman-Fan type 7): rank (n - 1) * q / 100 of the sorted values.
    assert percentile([4, 1, 3, 2], 95) == pytest.approx(3.85)  # 3 + 0.85 * (4 - 3)
    assert percentile([10, 20], 50) == 15.0
    assert percentile([1, 2, 3], 0) == 1 and percentile([1, 2, 3], 250) == 3  # clamped
    assert percentile(iter([5.0, 1.0]), 25) == 2.0  # any iterable, unsorted


def test_next_lines_are_line_starts_after_the_first_line() -> None:
    text = "import os\n\ndef f(x):\n    return x\r\n  ab\n    # note this\n"
    cursors = next_lines(text)
    assert [c.expected for c in cursors] == ["def f(x):", "return x", "# note this"]
    for c in cursors:  # each cursor stands before its expected text
        assert text[c.offset :].startswith(c.expected)
    assert next_lines("only one line") == []


def test_a_next_line_sample_holds_the_file_without_the_line_to_write() -> None:
    from finetune.evaluate import next_line_samples
    from lsp_server.repo.corpus import SourceFile

    text = "import os\n\ndef f(x):\n    return x\r\n"
    assert line_cut(text, text.index("return")) == "import os\n\ndef f(x):\n    \r\n"
    assert line_cut(text, len(text)) == text and line_cut("a = 1", 4) == "a = "
    samples = next_line_samples([SourceFile("m.py", text)], 10)
    assert {s.expected for s in samples} == {"def f(x):", "return x"}
    for s in samples:  # what comes after the cursor on its line is not there to copy
        assert s.text == line_cut(text, s.offset) and s.expected not in s.text


def test_next_line_exact_match_scores_like_eval() -> None:
    pairs = [("return  x", "return x"), ("return y", "return x"), ("", "a = 1")]
    assert next_line_exact_match(pairs) == pytest.approx(1 / 3)
    assert next_line_exact_match([]) is None


@pytest.fixture(scope="module")
def tasks():
    try:
        return build_line_tasks(load_problems())
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_line_tasks_mask_every_solution_line(tasks) -> None:
    assert len(tasks) == 1033  # SantaCoder's count for single-line infilling
    assert len({t.task_id for t in tasks}) == len(tasks)
    assert len({t.problem_id for t in tasks}) == 164
    for task in tasks[:50]:
        assert task.target.strip()
        assert task.prefix.endswith("\n")
        # Putting the masked line back restores the canonical program.
        assert task.program(task.target).startswith(task.prefix + task.target + "\n")


def test_scorer_passes_the_right_fill_and_fails_a_wrong_one(tasks) -> None:
    task = next(t for t in tasks if t.problem_id == "HumanEval/0" and "return True" in t.target)
    right = run_tests(task.program(task.target), task.test, task.entry_point)
    assert right.passed, right.detail
    wrong_fill = task.target.replace("return True", "return False")
    wrong = run_tests(task.program(wrong_fill), task.test, task.entry_point)
    assert wrong.status == "failed"
    assert "AssertionError" in wrong.detail


def test_scorer_kills_a_fill_that_loops_forever() -> None:
    program = "def f():\n    while True:\n        pass\n"
    outcome = run_tests(program, "def check(c):\n    c()\n", "f", timeout=1.0)
    assert outcome.status == "timeout"


def test_scorer_has_no_network_and_no_subprocesses() -> None:
    program = "import socket\ndef f():\n    socket.create_connection(('127.0.0.1', 9))\n"
    outcome = run_tests(program, "def check(c):\n    c()\n", "f", timeout=5.0)
    assert outcome.status == "failed" and "PermissionError" in outcome.detail
    program = "import subprocess\ndef f():\n    subprocess.run(['true'])\n"
    assert run_tests(program, "def check(c):\n    c()\n", "f").status == "failed"
