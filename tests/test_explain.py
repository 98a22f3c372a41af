"""Answers that explain themselves: a block cut by the token budget ends at a whole
statement, and an empty or cut answer of `codetailor complete` says why on stderr."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lsp_server import cli
from lsp_server.completion.completer import Completer
from lsp_server.completion.explain import end_at_boundary, why_empty
from lsp_server.completion.generation import Generation
from lsp_server.completion.prompt import PREFIX_ONLY
from lsp_server.completion.scope import decide_scope
from tests.fixtures.fakes import CharTokenizer, ScriptedEngine

BLOCK = "def count(path):\n    "
CUT = (
    "files = os.listdir(path)\n    names = [f for f in files]\n    return len(list(map(lambda file"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (CUT, "files = os.listdir(path)\n    names = [f for f in files]"),
        ("x = call(\n    a,\n    b)\ny = (1 +", "x = call(\n    a,\n    b)"),
        ("if ready:\n        go()\n    else:", "if ready:\n        go()"),
        ("total = a +", "total = a +"),  # no whole statement at all: unchanged
        ("a = 1\nb = 2", "a = 1\nb = 2"),  # already whole
    ],
)
def test_end_at_boundary_keeps_whole_statements(text: str, expected: str) -> None:
    assert end_at_boundary(text) == expected


def _completer(script: str) -> Completer:
    return Completer(ScriptedEngine(script), CharTokenizer(), PREFIX_ONLY, window_tokens=400)  # type: ignore[arg-type]


def test_a_block_cut_by_the_budget_stops_at_a_statement_not_mid_expression() -> None:
    completer = _completer(CUT + ")))\n")
    result = completer.complete(BLOCK, len(BLOCK), max_tokens=len(CUT), mode="block")
    assert result.generation.stop_reason == "max_tokens"
    assert result.text == "files = os.listdir(path)\n    names = [f for f in files]"
    assert result.cut_from.endswith("lambda file") and result.as_dict()["cut_at_boundary"]


def _args(**kw: object) -> argparse.Namespace:
    base = dict(repeat=1, max_tokens=8, mode="auto", time_budget=None, show_prompt=False)
    return argparse.Namespace(**(base | {"json": False} | kw))


def test_complete_says_why_an_empty_answer_is_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = "result = compute(values)\n"
    offset = len("result = ")
    completer = _completer("compute(values)\n")  # re-types what is right of the cursor
    assert cli.print_completions(_args(), completer, tmp_path / "a.py", text, offset, {}) == 0
    out, err = capsys.readouterr()
    assert out == "\n"
    assert "empty completion:" in err and "re-typed the text after the cursor" in err


def test_complete_says_when_the_budget_cut_the_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completer = _completer(CUT)
    args = _args(max_tokens=len(CUT), mode="block")
    assert cli.print_completions(args, completer, tmp_path / "a.py", BLOCK, len(BLOCK), {}) == 0
    out, err = capsys.readouterr()
    assert "lambda" not in out
    assert f"budget of {len(CUT)} tokens ran out" in err and "whole statement" in err


def test_why_empty_names_the_stop_when_the_model_wrote_nothing() -> None:
    scope = decide_scope("x = ", "\n", "line")
    nothing = Generation([], "eos", 5, 0, 1.0, 0.0)
    assert "ended at once" in why_empty("", "x = ", "\n", scope, nothing)
    late = Generation([], "time", 5, 0, 1.0, 0.0)
    assert "time budget" in why_empty("", "x = ", "\n", scope, late)
