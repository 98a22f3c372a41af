"""The next-edit predictor: the drafted rewrite is plain greedy decoding's, several tokens
per forward when the model copies the window, stopping once the window is settled."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from lsp_server.completion.next_edit import EditWindow, NextEditRequest, RecentEdit
from lsp_server.completion.next_edit_prompt import next_edit_format
from lsp_server.model.engine import Engine
from lsp_server.model.next_edit import NextEditPredictor

SEP = "<file_sep>"
SEP_ID = 1
EOS = 0


class SepTokenizer:
    """One token per character, and `<file_sep>` as one special token."""

    unk_token_id = None

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        ids: list[int] = []
        for i, piece in enumerate(text.split(SEP)):
            ids += ([SEP_ID] if i else []) + [ord(c) for c in piece]
        return ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return "".join(SEP if i == SEP_ID else chr(i) for i in ids if i != EOS)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return SEP_ID if token == SEP else None


class WritingBackend:
    """A model that, after the prompt, writes `answer` token by token (then EOS)."""

    eos_token_ids = frozenset({EOS})

    def __init__(self, prompt_length: int, answer: list[int]) -> None:
        self.prompt_length = prompt_length
        self.answer = answer
        self.forwards = 0

    def new_cache(self) -> list[int]:
        return []

    def _next(self, length: int) -> int:
        k = length - self.prompt_length
        return self.answer[k] if 0 <= k < len(self.answer) else EOS

    def forward(self, cache: list[int], token_ids: Sequence[int], allowed=None, **_) -> int:
        self.forwards += 1
        cache.extend(token_ids)
        return self._next(len(cache))

    def verify(self, cache: list[int], token_ids: Sequence[int], *, keep=None, allowed=None, **_):
        self.forwards += 1
        start = len(cache)
        cache.extend(token_ids)
        n = len(token_ids)
        return [self._next(start + end + 1) for end in range(n - (keep or n), n)]

    def crop(self, cache: list[int], length: int) -> None:
        del cache[length:]


CURRENT = "".join(f"    value_{i} = compute(x, {i})\n" for i in range(11))
UPDATED = CURRENT.replace("compute(x, 3)", "compute(y, 3)")
REQUEST = NextEditRequest(
    path="src/values.py",
    history=(RecentEdit("src/values.py", "def f(x):\n", "def f(y):\n"),),
    window=EditWindow(start_line=4, original=CURRENT, current=CURRENT, cursor=0),
)


def predict(answer: str, draft_tokens: int):
    tokenizer = SepTokenizer()
    fmt = next_edit_format(None, [SEP])
    # The model writes the prompt's last line break itself (see NextEditPredictor.predict).
    prompt = tokenizer.encode(fmt.prompt(REQUEST))[:-1]
    backend = WritingBackend(len(prompt), tokenizer.encode("\n" + answer if answer else ""))
    engine = Engine(backend, draft_tokens=draft_tokens)
    answer_ = NextEditPredictor(engine, tokenizer, fmt).predict(REQUEST)
    return answer_, backend.forwards


@pytest.mark.parametrize("answer", [UPDATED + SEP + "junk", CURRENT + SEP, UPDATED[:40]])
def test_the_drafted_rewrite_is_plain_greedy_decodings(answer: str) -> None:
    drafted, drafted_forwards = predict(answer, 8)
    plain, plain_forwards = predict(answer, 0)
    assert (drafted.updated, drafted.edit) == (plain.updated, plain.edit)
    assert drafted.generated_tokens == plain.generated_tokens
    assert drafted_forwards < plain_forwards


def test_copying_the_window_costs_few_forwards_and_stops_after_the_change() -> None:
    answer, _ = predict(UPDATED + SEP, 8)
    assert answer.updated == UPDATED
    assert answer.edit is not None and answer.edit.text == "y"
    assert CURRENT[answer.edit.start : answer.edit.end] == "x"
    # stopped once two unchanged lines followed the change, not at the window's end
    assert answer.generated_tokens == 1 + len("".join(UPDATED.splitlines(keepends=True)[:6]))
    assert answer.generated_tokens / answer.forwards > 4


def test_a_copied_window_is_no_edit() -> None:
    answer, _ = predict(CURRENT + SEP, 8)
    assert answer.edit is None and answer.stop_reason == "no_edit"
    assert answer.generated_tokens / answer.forwards > 4


def test_history_is_trimmed_to_its_token_budget_most_recent_kept() -> None:
    tokenizer = SepTokenizer()
    fmt = next_edit_format(None, [SEP])
    edits = [RecentEdit("a.py", f"x = {i}\n", f"x = {i}!\n") for i in range(10)]
    block = len(tokenizer.encode(fmt.history_block(edits[0])))
    engine = Engine(WritingBackend(0, []))
    predictor = NextEditPredictor(engine, tokenizer, fmt, history_tokens=3 * block)
    assert predictor.fitting(edits) == tuple(edits[-3:])


@pytest.mark.slow
def test_greedy_identity_on_a_tiny_model(tiny_model_dir: Path) -> None:
    """Drafting on or off, a real (tiny) model writes the same window."""
    from lsp_server.model.backend import TransformersBackend, eos_ids
    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import tokenizer_special_tokens

    loaded = load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    fmt = next_edit_format(None, tokenizer_special_tokens(loaded.tokenizer))
    backend = TransformersBackend(loaded.model, eos_ids(loaded.tokenizer, loaded.model))
    answers = []
    for draft in (8, 0):
        engine = Engine(backend, draft_tokens=draft)
        predictor = NextEditPredictor(engine, loaded.tokenizer, fmt)
        answers.append(predictor.predict(REQUEST))
    assert answers[0].updated == answers[1].updated
    assert answers[0].generated_tokens == answers[1].generated_tokens


def test_a_model_that_ends_at_once_offers_no_edit() -> None:
    answer, _ = predict("", 8)
    assert answer.edit is None and answer.stop_reason == "unfinished"


def test_a_model_writing_something_else_is_stopped_early() -> None:
    answer, _ = predict("".join(f"# note {i}\n" for i in range(40)), 8)
    assert answer.edit is None
    assert answer.generated_tokens <= len("# note 10\n") * 10
