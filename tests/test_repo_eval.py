"""`codetailor eval REPO`: cursor sampling on held-out files, scoring, and the command."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.measure.quality.humaneval_eval import TaskResult, paired
from lsp_server.measure.quality.repo_eval import Sample, sample_cursors, score
from lsp_server.model.loading import load_model
from tests.fixtures.adapters import make_adapter

MODULE = """import os


def size(path):
    if not os.path.exists(path):
        return 0
    return os.path.getsize(path)


class Counter:
    def __init__(self, start):
        self.value = start

    def bump(self, step=1):
        self.value += step
        return self.value
"""


def test_samples_are_deterministic_per_seed_and_cover_every_kind() -> None:
    files = [(f"pkg/m{i}.py", MODULE) for i in range(3)]
    first = sample_cursors(files, 12, seed=1)
    assert first == sample_cursors(list(reversed(files)), 12, seed=1)
    assert first != sample_cursors(files, 12, seed=2)
    assert {s.kind for s in first} == {"line", "mid", "block"}
    assert len(first) == 12


def test_each_kind_expects_what_follows_the_cursor() -> None:
    samples = sample_cursors([("m.py", MODULE)], 100, seed=0)
    for s in samples:
        if s.kind in ("line", "mid"):  # the rest of the line is cut: what the user writes
            line_end = s.text.find("\n", s.offset)
            assert s.text[s.offset : line_end] == ""
            assert s.text[: s.offset] + s.expected + s.text[s.offset :] in MODULE
        else:  # the block's body was cut out of the document
            assert s.expected not in s.text
            assert s.text[: s.offset].rstrip().endswith(":")
    blocks = {s.expected for s in samples if s.kind == "block"}
    assert "self.value += step\n        return self.value" in blocks
    mids = [s for s in samples if s.kind == "mid"]
    assert all(s.text[s.offset - 1].isalnum() or s.text[s.offset - 1] == "_" for s in mids)


def test_score_summarises_by_kind() -> None:
    samples = [
        Sample("a.py", "line", "x = 1\n", 0, "x = 1"),
        Sample("a.py", "mid", "x = 1\n", 1, " = 1"),
    ]
    answers = {0: "x  =  1", 1: " = 2"}
    summary, rows = score(samples, lambda s: (answers[s.offset], 10.0))
    assert summary["exact_match"] == 0.5
    assert summary["by_kind"]["line"]["exact_match"] == 1.0
    assert summary["by_kind"]["mid"]["exact_match"] == 0.0
    assert summary["by_kind"]["block"]["samples"] == 0
    assert summary["latency_ms_p50"] == 10.0
    assert 0 < summary["edit_similarity"] < 1


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    for i in range(12):
        (root / f"mod{i}.py").write_text(MODULE.replace("size", f"size{i}"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    subprocess.run(["git", "-C", str(root), "add", "."], check=True)
    return root


def test_eval_repo_prints_the_contracted_fields(
    repo: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "eval",
        str(repo),
        "--model",
        str(tiny_model_dir),
        "--samples",
        "6",
        "--seed",
        "3",
        "--max-tokens",
        "4",
        "--holdout",
        "0.3",
        "--json",
    ]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    for key in ("exact_match", "edit_similarity", "samples", "latency_ms_p50", "model", "adapter"):
        assert key in first
    assert first["samples"] == 6 and first["context"] is True
    assert 0 <= first["exact_match"] <= 1 and 0 <= first["edit_similarity"] <= 1
    assert main([*args, "--no-context"]) == 0
    assert json.loads(capsys.readouterr().out)["context"] is False


def test_eval_needs_a_repo_or_a_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval"]) == 2
    assert "give either REPO or --benchmark" in capsys.readouterr().err


def test_eval_humaneval_line_on_the_tiny_model(
    tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "eval",
        "--benchmark",
        "humaneval-line",
        "--model",
        str(tiny_model_dir),
        "--samples",
        "3",
        "--seed",
        "5",
        "--max-tokens",
        "4",
        "--json",
        "--details",
    ]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 3 and report["benchmark"] == "humaneval-line"
    assert {"exact_match", "pass_at_1", "edit_similarity", "latency_ms_p50"} <= report.keys()
    assert main(args) == 0  # the same seed draws the same tasks
    again = json.loads(capsys.readouterr().out)
    assert [d["task_id"] for d in again["details"]] == [d["task_id"] for d in report["details"]]


def _result(task: str, exact: bool, passed: bool) -> TaskResult:
    return TaskResult(task, "x" if exact else "y", "x", exact, float(exact), passed, 1.0)


def test_paired_counts_what_each_got_that_the_other_missed() -> None:
    base = [_result(f"t{i}", i < 4, i < 2) for i in range(10)]  # right on t0-t3
    tuned = [_result(f"t{i}", 2 <= i < 9, 2 <= i < 5) for i in range(10)]  # right on t2-t8
    report = paired(base, tuned)
    assert report["tasks"] == 10
    assert report["exact"] == {"both": 2, "adapter_only": 5, "base_only": 2, "sign_test_p": 0.4531}
    assert report["passed"]["adapter_only"] == 3 and report["passed"]["base_only"] == 2
    assert report["exact_match_difference"] == 0.3
    low, high = report["exact_match_difference_95"]
    assert low < 0.3 < high and low >= -1 and high <= 1
    with pytest.raises(ValueError, match="same tasks"):
        paired(base, tuned[::-1])


def test_eval_humaneval_compare_pairs_the_base_and_the_adapter_on_the_same_tasks(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = load_model(str(tiny_model_dir))
    meta = {
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "prompt_format": "prefix-only",
    }
    adapter = make_adapter(tiny_model_dir, tmp_path / "lora", meta, seed=3)
    args = ["eval", "--benchmark", "humaneval-line", "--model", str(tiny_model_dir)]
    args += ["--adapter", str(adapter), "--compare", "--samples", "3", "--max-tokens", "4"]
    assert main([*args, "--json", "--details"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["base"]["adapter"] is None and report["adapter"]["adapter"] is not None
    assert report["base"]["samples"] == report["adapter"]["samples"] == 3
    assert report["paired"]["tasks"] == 3 and len(report["details"]) == 3
    exact = report["paired"]["exact"]
    assert exact["both"] + exact["adapter_only"] == round(3 * report["adapter"]["exact_match"])
