"""The window a cursor's steps to next (`PromptWindow.next_step`): the head of the prompt
of the request that outgrows the current window, warmed before that request comes."""

from __future__ import annotations

from lsp_server.completion.completer import STEP_HEADROOM, Completer
from lsp_server.completion.prompt import PREFIX_ONLY, Snippet
from lsp_server.completion.window import WINDOW_STEP_LINES, PromptWindow
from lsp_server.model.engine import Engine
from tests.fixtures.fakes import CharTokenizer, FakeBackend

WINDOW = 512


def typed(lines: int, word: str = "") -> str:
    """A file typed line after line (16 characters, so 16 tokens, a line), then `word`."""
    return "".join(f"v{i:03d} = f({i:04d})\n" for i in range(lines)) + word


def first_line(prompt: str) -> str:
    """The first line of the file in the prompt (after its header and context)."""
    return next(line for line in prompt.split("\n") if line.startswith("v"))


def test_the_next_step_heads_the_prompt_of_the_request_that_outgrows_the_window() -> None:
    window = PromptWindow(CharTokenizer(), PREFIX_ONLY, window_tokens=WINDOW)
    context = [Snippet("other.py", "def other():\n    return 1\n")]
    assert window.next_step(typed(5), "", "a.py", context, headroom=STEP_HEADROOM) is None
    start = first_line(window.layout(typed(5), "", "a.py", context).prompt)
    warmed, steps, file = None, 0, typed(200)
    for end in range(5 * 16, len(file), 5):  # typing on, five characters at a time
        text = file[:end]
        prompt = window.layout(text, "", "a.py", context).prompt
        if first_line(prompt) != start:  # the window stepped: the warm foresaw it
            assert warmed is not None and prompt.startswith(warmed)
            start, warmed, steps = first_line(prompt), None, steps + 1
        warmed = window.next_step(text, "", "a.py", context, headroom=STEP_HEADROOM) or warmed
    assert steps >= 3


def test_a_window_that_holds_fewer_lines_than_a_step_has_none() -> None:
    window = PromptWindow(CharTokenizer(), PREFIX_ONLY, window_tokens=WINDOW)
    one_line = "x = [" + "1, " * 400  # one line fills the window: no lines to drop
    assert window.next_step(one_line, "", None, [], headroom=STEP_HEADROOM) is None
    assert WINDOW_STEP_LINES > 1


def test_warming_a_step_ahead_fills_the_cache_the_stepped_request_uses() -> None:
    engine = Engine(FakeBackend())
    completer = Completer(engine, CharTokenizer(), PREFIX_ONLY, window_tokens=WINDOW)
    lines = 1
    while completer.window.next_step(typed(lines), "", None, [], headroom=STEP_HEADROOM) is None:
        lines += 1
    text = typed(lines)
    assert completer.warm(text, len(text), step_ahead=True) > 0
    assert completer.warm(typed(2), 2 * 16, step_ahead=True) == 0  # far from full: nothing
    while first_line(completer.prompt_for(typed(lines), "")) == first_line(
        completer.prompt_for(text, "")
    ):
        lines += 1
    stepped = typed(lines)
    completion = completer.complete(stepped, len(stepped), max_tokens=1)
    warmed_part = len(completer.window.next_step(text, "", None, [], headroom=STEP_HEADROOM) or "")
    assert completion.generation.cached_tokens >= warmed_part - 1
