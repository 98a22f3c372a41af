"""The next-edit predictor: the drafted rewrite is plain greedy decoding's, several tokens
per forward when the model copies the window, stopping once the window is settled."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

from lsp_server.completion.next_edit import EditWindow, NextEditRequest, RecentEdit
from lsp_server.completion.next_edit_gate import DEFAULT_GATE, OPEN_GATE, ShowGate
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


SURE, UNSURE = (math.log(0.95), 0.2), (math.log(0.1), 2.5)  # (log-probability, entropy)


class WritingBackend:
    """A model that, after the prompt, writes `answer` token by token (then EOS), sure of
    each token (p = 0.95) but those at the answer's indices in `unsure` (p = 0.1)."""

    eos_token_ids = frozenset({EOS})

    def __init__(self, prompt_length: int, answer: list[int], unsure: set[int] = frozenset()):
        self.prompt_length = prompt_length
        self.answer = answer
        self.unsure = unsure
        self.forwards = 0

    def _score(self, length: int) -> tuple[float, float]:
        return UNSURE if length - self.prompt_length in self.unsure else SURE

    def new_cache(self) -> list[int]:
        return []

    def _next(self, length: int) -> int:
        k = length - self.prompt_length
        return self.answer[k] if 0 <= k < len(self.answer) else EOS

    def forward(self, cache: list[int], token_ids: Sequence[int], allowed=None, scores=None):
        return self.verify(cache, token_ids, keep=1, scores=scores)[0]

    def verify(
        self, cache: list[int], token_ids: Sequence[int], *, keep=None, allowed=None, scores=None
    ):
        self.forwards += 1
        start = len(cache)
        cache.extend(token_ids)
        n = len(token_ids)
        ends = [start + end + 1 for end in range(n - (keep or n), n)]
        if scores is not None:
            scores.extend(self._score(length) for length in ends)
        return [self._next(length) for length in ends]

    def crop(self, cache: list[int], length: int) -> None:
        del cache[length:]


CURRENT = "".join(f"    value_{i} = compute(x, {i})\n" for i in range(11))
UPDATED = CURRENT.replace("compute(x, 3)", "compute(y, 3)")
REQUEST = NextEditRequest(
    path="src/values.py",
    history=(RecentEdit("src/values.py", "def f(x):\n", "def f(y):\n"),),
    window=EditWindow(start_line=4, original=CURRENT, current=CURRENT, cursor=0),
)


def predict(answer: str, draft_tokens: int, unsure: set[int] = frozenset(), gate=DEFAULT_GATE):
    """The predictor's answer when the model writes `answer`, unsure of the characters at
    offsets `unsure` in it; and the backend's forwards."""
    tokenizer = SepTokenizer()
    fmt = next_edit_format(None, [SEP])
    # The model writes the prompt's last line break itself (see NextEditPredictor.predict).
    prompt = tokenizer.encode(fmt.prompt(REQUEST))[:-1]
    written = tokenizer.encode("\n" + answer if answer else "")
    backend = WritingBackend(len(prompt), written, {1 + i for i in unsure})
    engine = Engine(backend, draft_tokens=draft_tokens)
    answer_ = NextEditPredictor(engine, tokenizer, fmt, gate=gate).predict(REQUEST)
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


def test_a_rewrite_drafts_more_per_forward_than_the_engines_completions() -> None:
    """The window is copied: drafts from it are taken, so the rewrite drafts up to
    REWRITE_DRAFT_TOKENS per forward even where the engine's completions draft 3 (4-bit
    weights)."""
    answer, _ = predict(UPDATED + SEP, 3)
    assert answer.updated == UPDATED
    assert answer.generated_tokens / answer.forwards > 4  # more than 1 + 3 a forward


CHANGED = UPDATED.index("compute(y") + len("compute(")  # where the model wrote "y"


@pytest.mark.parametrize("draft_tokens", [8, 0])
def test_a_confident_edit_is_shown_with_its_confidence(draft_tokens: int) -> None:
    # Unsure only of a token on an unchanged line: the edit's own lines are sure.
    answer, _ = predict(UPDATED + SEP, draft_tokens, unsure={5})
    assert answer.edit is not None and answer.edit.text == "y"
    assert answer.withheld is None
    confidence = answer.confidence
    assert confidence is not None
    assert confidence.min_logprob == pytest.approx(SURE[0])
    assert confidence.mean_entropy == pytest.approx(SURE[1])
    # the changed line's tokens: the line as written, its line break included
    assert confidence.tokens == len(UPDATED.splitlines(keepends=True)[3])
    assert confidence.deleted_share == 0.0


@pytest.mark.parametrize("draft_tokens", [8, 0])
def test_the_gate_holds_back_an_edit_the_model_was_unsure_of(draft_tokens: int) -> None:
    answer, _ = predict(UPDATED + SEP, draft_tokens, unsure={CHANGED})
    assert answer.edit is None and answer.stop_reason == "unsure"
    assert answer.withheld is not None and answer.withheld.text == "y"
    assert answer.confidence is not None
    assert answer.confidence.min_logprob == pytest.approx(math.log(0.1))
    assert answer.updated == UPDATED  # the rewrite is kept for the record
    # An open gate shows the same edit.
    shown, _ = predict(UPDATED + SEP, draft_tokens, unsure={CHANGED}, gate=OPEN_GATE)
    assert shown.edit == answer.withheld


def test_a_gate_with_a_deletion_cap_holds_back_a_rewrite_that_drops_most_of_the_window() -> None:
    short = "".join(CURRENT.splitlines(keepends=True)[:3])  # 3 of 11 lines, then the end
    answer, _ = predict(short + SEP, 8, gate=ShowGate(max_deleted_share=0.5))
    assert answer.edit is None and answer.stop_reason == "unsure"
    assert answer.confidence is not None and answer.confidence.deleted_share > 0.7
    shown, _ = predict(short + SEP, 8, gate=OPEN_GATE)
    assert shown.edit is not None and shown.edit.text == ""


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
