"""A 4 MB line costs no more than a short one (finding 8): the window is cut by characters first.

The work is measured as the characters handed to the tokenizer, not as time.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from lsp_server.completion import completer as completer_module
from lsp_server.completion.completer import NEAR_CHARS, Completer
from lsp_server.completion.generation import Generation
from lsp_server.completion.prompt import FORMATS, PREFIX_ONLY, PromptFormat, Snippet
from lsp_server.completion.window import MAX_CHARS_PER_TOKEN, WINDOW_STEP_LINES
from tests.fixtures.fakes import CharTokenizer

WINDOW = 1024
LONG = "x = [" + "1234567, " * (4 * 2**20 // 9) + "]"  # one 4 MB line


class CountingTokenizer:
    """Wraps a tokenizer and counts the calls and characters that reach `encode`."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.calls = 0
        self.chars = 0
        self.bos_token_id = getattr(inner, "bos_token_id", None)
        self.eos_token_id = getattr(inner, "eos_token_id", 0)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.calls += 1
        self.chars += len(text)
        return self.inner.encode(text, add_special_tokens=add_special_tokens)

    def decode(self, ids: Sequence[int]) -> str:
        return self.inner.decode(ids)

    def get_vocab(self) -> dict[str, int]:
        return self.inner.get_vocab()


class OneToken:
    """An engine that records the prompt and returns one token."""

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []

    def generate(self, ids: list[int], **_: object) -> Generation:
        self.prompts.append(list(ids))
        return Generation([ord("y")], "max_tokens", len(ids), 0, 1.0, 1.0)


@pytest.fixture(scope="module")
def bpe(tmp_path_factory: pytest.TempPathFactory) -> object:
    from tests.tiny import FIM_TOKENS, build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tok"), FIM_TOKENS)


# Bound: every part cut to its budget in characters, counted a few times over.
MAX_CHARS = 12 * WINDOW * MAX_CHARS_PER_TOKEN


@pytest.mark.parametrize("where", ["start", "end", "middle"])
@pytest.mark.parametrize("fmt", [FORMATS["starcoder"], PREFIX_ONLY], ids=lambda f: f.name)
@pytest.mark.parametrize("kind", ["chars", "bpe"])
def test_a_4mb_line_gives_a_bounded_prompt_with_bounded_work(
    where: str, fmt: PromptFormat, kind: str, bpe: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[int] = []  # the text lengths scope and post-processing are given

    def recording(real):  # noqa: ANN001, ANN202
        def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            seen.extend(len(a) for a in args if isinstance(a, str))
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(completer_module, "decide_scope", recording(completer_module.decide_scope))
    monkeypatch.setattr(completer_module, "postprocess", recording(completer_module.postprocess))
    tokenizer = CountingTokenizer(CharTokenizer() if kind == "chars" else bpe)
    engine = OneToken()
    completer = Completer(engine, tokenizer, fmt, window_tokens=WINDOW, token_healing=False)
    text = "import os\n\n" + LONG + "\n\ndef main():\n    pass\n"
    offset = {"start": 11, "end": 11 + len(LONG), "middle": 11 + len(LONG) // 2}[where]
    snippet = Snippet("other.py", "y = [" + "7654321, " * 100_000 + "]")
    completer.complete(text, offset, max_tokens=1, path="main.py", context=[snippet])
    assert len(engine.prompts[0]) <= WINDOW
    assert tokenizer.chars <= MAX_CHARS, (tokenizer.calls, tokenizer.chars)
    assert tokenizer.calls <= 200
    assert seen and max(seen) <= NEAR_CHARS


def test_the_suffix_keeps_only_its_budget_of_the_cursors_line() -> None:
    completer = Completer(OneToken(), CharTokenizer(), FORMATS["starcoder"], window_tokens=WINDOW)
    prompt = completer.prompt_for("", LONG)
    suffix = prompt.split("<fim_suffix>", 1)[1].split("<fim_middle>", 1)[0]
    assert suffix == LONG[: len(suffix)] and 0 < len(suffix) <= completer.window.suffix_tokens


def test_the_window_start_still_moves_in_steps_on_a_long_file() -> None:
    # Typing at the end of a file far longer than the character cut: the prompt's
    # first line stays put between keystrokes (the KV cache keeps hitting).
    lines = [f"value_{i} = compute({i})" for i in range(20_000)]
    completer = Completer(OneToken(), CharTokenizer(), PREFIX_ONLY, window_tokens=WINDOW)
    text = "\n".join(lines) + "\n"
    starts = set()
    for typed in ("r", "re", "res", "resu", "resul", "result"):
        prompt = completer.prompt_for(text + typed, "")
        starts.add(prompt.split("\n", 1)[0])
    assert len(starts) == 1
    first = int(next(iter(starts)).split("_")[1].split(" ")[0])
    assert first % WINDOW_STEP_LINES == 0
