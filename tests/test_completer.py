"""The token budget and the path from a document to a completion, with a scripted engine."""

from __future__ import annotations

import pytest

from lsp_server.completion.completer import Completer
from lsp_server.completion.postprocess import RULES, postprocess
from lsp_server.completion.prompt import FORMATS, PREFIX_ONLY, Snippet
from lsp_server.completion.scope import decide_scope
from lsp_server.completion.window import (
    WINDOW_STEP_LINES,
    clip_line_start,
    clip_prefix,
    clip_suffix,
    fit_snippets,
    rejoin_held_whitespace,
)
from tests.fixtures.fakes import CharTokenizer, ScriptedEngine


def count(text: str) -> int:
    """One token per character: budgets become easy to reason about."""
    return len(text)


def lines(n: int, width: int = 9) -> str:
    return "".join(f"{i:0{width}d}\n" for i in range(n))  # each line costs width + 1


# --- truncation rules -------------------------------------------------------


def test_prefix_keeps_the_lines_nearest_the_cursor() -> None:
    prefix = lines(100) + "x = "
    clipped = clip_prefix(prefix, 200, count)
    assert clipped.endswith("000000099\nx = ")
    assert count(clipped) <= 200
    assert clipped.startswith(f"{(100 - len(clipped.splitlines()) + 1):09d}")


def test_prefix_start_snaps_to_line_steps() -> None:
    """Typing more text does not move the window's start until it must jump."""
    prefix = lines(100)
    starts = {clip_prefix(prefix + "y" * k, 500, count).split("\n", 1)[0] for k in range(40)}
    assert len(starts) == 1
    first_line = int(starts.pop())
    assert first_line % WINDOW_STEP_LINES == 0


def test_prefix_that_fits_is_untouched() -> None:
    assert clip_prefix("a\nb\nc", 100, count) == "a\nb\nc"


def test_overlong_cursor_line_is_cut_at_its_start() -> None:
    line = "x" * 5000 + "END"
    clipped = clip_prefix("a\n" + line, 100, count)
    assert clipped.endswith("END") and count(clipped) <= 100
    assert clip_line_start("abc", 0, count) == ""


def test_suffix_keeps_its_first_lines() -> None:
    suffix = ")\n" + lines(100)
    clipped = clip_suffix(suffix, 55, count)
    assert clipped.startswith(")\n000000000\n") and count(clipped) <= 55
    assert clipped.split("\n")[-1] == "000000004"


def test_suffix_keeps_the_rest_of_the_line_up_to_its_budget() -> None:
    # The start of the cursor's line, never more than the budget (issue 14, finding 8).
    assert clip_suffix("a very long rest of line\nmore", 3, count) == "a v"
    assert clip_suffix("rest of line\nmore", 13, count) == "rest of line"


def test_snippets_fill_in_rank_order_and_the_last_is_cut_at_lines() -> None:
    snippets = [Snippet("a.py", lines(3)), Snippet("b.py", lines(10)), Snippet("c.py", "c\n")]
    chosen = fit_snippets(snippets, 80, count)
    assert [s.path for s in chosen] == ["a.py", "b.py"]
    assert chosen[1].text.startswith("000000000\n000000001")
    assert sum(count(f"{s.path}\n{s.text}\n") + 2 for s in chosen) <= 80


def test_snippets_already_visible_or_duplicated_are_skipped() -> None:
    snippets = [
        Snippet("a.py", "def f(): pass"),
        Snippet("b.py", "def f(): pass"),
        Snippet("c", ""),
    ]
    assert [s.path for s in fit_snippets(snippets, 1000, count)] == ["a.py"]
    assert fit_snippets(snippets, 1000, count, seen="x\ndef f(): pass\n") == []


# --- the whole path -----------------------------------------------------------


def make(script: str, fmt=PREFIX_ONLY, **kw) -> tuple[Completer, ScriptedEngine]:
    engine = ScriptedEngine(script)
    return Completer(engine, CharTokenizer(), fmt, **kw), engine  # type: ignore[arg-type]


def test_window_is_shared_by_context_suffix_and_prefix() -> None:
    completer, _ = make(
        "", FORMATS["qwen2.5-coder"], window_tokens=800, suffix_tokens=60, context_tokens=300
    )
    text = lines(200) + "x = " + "\n" + lines(50)
    context = [Snippet("lib.py", lines(5, 20)), Snippet("other.py", lines(30, 20))]
    prompt = completer.prompt_for(
        text[: text.index("x = ") + 4],
        text[text.index("x = ") + 4 :],
        path="app.py",
        context=context,
    )
    assert count(prompt) <= 800
    assert "<|file_sep|>lib.py\n" in prompt and "<|file_sep|>app.py\n" in prompt
    # The best snippet stands nearest the current file.
    assert prompt.index("other.py") < prompt.index("lib.py") < prompt.index("app.py")
    middle = prompt.split("<|fim_suffix|>")[1]
    assert count(middle) <= 60 + len("<|fim_middle|>")


def test_prefix_only_prompt_leaves_the_suffix_out() -> None:
    completer, _ = make("")
    assert completer.prompt_for("a = ", "b\n", path="x.py") == "# x.py\na ="
    assert completer.prompt_for("if a:\n    ", "", path="x.py") == "# x.py\nif a:"


@pytest.mark.parametrize(
    ("generated", "held", "healed"),
    [
        ("    return x", "    ", "return x"),  # the model re-typed the indentation
        (" return x", "    ", "return x"),  # it indented differently: the user's stands
        ("\n        return x", "\n        ", "return x"),  # newline and indentation
        ("\n    return x", "\n        ", "return x"),
        ("\n\n    return x", "\n    ", "\n    return x"),  # one more blank line
        (" 1", " ", "1"),  # `x = ` + " 1"
        ("1", " ", "1"),
        ("  ", "    ", ""),  # still typing whitespace
        ("abc", "", "abc"),
        # At a line start the model's indentation is the completion's own.
        ("\n    for n in x:", "\n\n", "    for n in x:"),
        ("    for n in x:", "\n", "    for n in x:"),
        ("\n        y = 1", "\n\n    ", "    y = 1"),  # deeper than what the user typed
    ],
)
def test_rejoin_held_whitespace(generated: str, held: str, healed: str) -> None:
    assert rejoin_held_whitespace(generated, held) == healed


def test_trailing_whitespace_is_held_back_from_the_prompt() -> None:
    completer, engine = make("\n        return 1\n\n    def g(self):\n")
    text = "class A:\n    def f(self):\n        "
    result = completer.complete(text, len(text), path="a.py", max_tokens=100)
    assert engine.prompts[0][-1] == ord(":")
    assert result.text == "return 1"


def test_complete_applies_scope_and_postprocessing() -> None:
    completer, engine = make("items))\nprint('more')\n")
    result = completer.complete("print(len())\n", 10, path="a.py")
    assert result.text == "items"
    assert result.raw.startswith("items))")
    assert result.as_dict()["scope"] == "end of line"
    assert engine.prompts[0] == [ord(c) for c in "# a.py\nprint(len("]


def test_rules_can_be_switched_off() -> None:
    completer, _ = make("items))\nprint('more')\n", rules=())
    result = completer.complete("print(len(", 10, max_tokens=100)
    assert result.text == "items))\nprint('more')\n"


def test_block_completion_stops_generating_at_the_dedent() -> None:
    completer, engine = make("return 1\n\ndef g():\n    return 2\n")
    result = completer.complete("def f():\n    ", 13, path="a.py", max_tokens=100)
    assert result.text == "return 1"
    assert result.generation.stop_reason == "stop"


# One case per rule: (generated text, prefix, suffix) where that rule changes what is shown.
RULE_CASES = {
    "scope": ("x = 1\ny = 2", "value = ", ""),
    "repetition": ("a, b, a, b, a, b, a, b", "items = [", "]"),
    "indentation": ("x = 1\n    y = 2", "def f():\n\t", ""),
    "brackets": ("items)", "print(len(", "))"),
    "overlap": ("foo, url, data=data)", "request(", "url, data=data)"),
    "whitespace": ("value   ", "x = ", ""),
}


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_changes_what_is_shown(rule: str) -> None:
    """Each named rule, applied alone, changes what is shown on its own case."""
    generated, prefix, suffix = RULE_CASES[rule]
    scope = decide_scope(prefix, suffix, "auto")
    alone = postprocess(generated, prefix, suffix, scope, rules=[rule])
    assert alone != postprocess(generated, prefix, suffix, scope, rules=()), rule
    completer, _ = make("x", rules=[r for r in RULES if r != rule])
    assert rule not in completer.rules


def test_prompt_ids_are_what_complete_feeds_the_engine() -> None:
    """Warming prefills exactly the ids the real request at that cursor starts with."""
    engine = ScriptedEngine("pass")
    completer = Completer(engine, CharTokenizer(), PREFIX_ONLY, window_tokens=200)  # type: ignore[arg-type]
    text = lines(40) + "def f():\n    "
    ids = completer.prompt_ids(text, len(text), path="src/app.py")
    completer.complete(text, len(text), path="src/app.py")
    assert engine.prompts == [ids]
    # A request further on in the same window shares the warmed ids as its prefix.
    assert completer.prompt_ids(text + "x", len(text) + 1, path="src/app.py")[: len(ids)] == ids


def test_warm_prefills_the_prompt_ids() -> None:
    class PrefillEngine(ScriptedEngine):
        def prefill(self, ids, cancel=None, *, chunk=None):
            self.prompts.append(list(ids))
            return len(ids)

    engine = PrefillEngine("")
    completer = Completer(engine, CharTokenizer(), PREFIX_ONLY, window_tokens=200)  # type: ignore[arg-type]
    text = lines(5)
    assert completer.warm(text, 20) == len(completer.prompt_ids(text, 20))
    assert engine.prompts == [completer.prompt_ids(text, 20)]
