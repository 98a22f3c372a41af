"""What `eval`, `bench latency` and `feedback stats` print for people: tables, never a
Python repr; `--json` stays the machine form."""

from __future__ import annotations

import json

import pytest

from lsp_server.measure.latency import print_tables
from lsp_server.measure.quality.cli import _report
from lsp_server.measure.tables import cell, flatten


def test_eval_prints_a_table_with_nested_figures_spelled_out(
    capsys: pytest.CaptureFixture[str],
) -> None:
    summary = {
        "exact_match": 0.25,
        "samples": 8,
        "adapter": None,
        "by_language": {"python": {"exact_match": 0.5, "samples": 4}},
    }
    _report(summary, None, as_json=False)
    out = capsys.readouterr().out
    assert "{" not in out and "None" not in out
    assert "by_language.python.exact_match" in out and "0.5" in out
    _report(summary, None, as_json=True)
    assert json.loads(capsys.readouterr().out) == summary  # --json unchanged


def test_bench_latency_prints_tables_with_the_never_ran_note(
    capsys: pytest.CaptureFixture[str],
) -> None:
    report = {
        "ours": {"requests": 5, "p50_ms": 1.0, "p95_ms": 2.0, "mean_ms": 1.2, "model_runs": 0},
        "naive": {"requests": 5, "p50_ms": 5400.0, "p95_ms": 5500.0, "mean_ms": 5450.0},
        "ours/naive": {"p50_ms": 0.0, "p95_ms": 0.0},
    }
    print_tables(report)
    out = capsys.readouterr().out
    assert "Typing replay" in out and "ours/naive (ratio)" in out
    assert "NEVER RAN THE MODEL" in out and "|" not in out.replace("||", "")


def test_cells_read_as_words_and_numbers() -> None:
    assert cell(None) == "-" and cell(True) == "yes" and cell(0.123456) == "0.1235"
    assert flatten({"a": {"b": 1}, "c": 2}) == [("a.b", 1), ("c", 2)]
