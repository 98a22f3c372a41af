"""The show-or-not gate of next edits: which tokens speak for an edit, and what it shows."""

from __future__ import annotations

import math

import pytest

from lsp_server.completion.next_edit import minimal_edit
from lsp_server.completion.next_edit_gate import (
    DEFAULT_GATE,
    OPEN_GATE,
    EditConfidence,
    ShowGate,
    edit_confidence,
)

CURRENT = "a = 1\nb = 2\nc = 3\nd = 4\n"


def _ends(pieces: list[str]) -> list[int]:
    ends, at = [], 0
    for piece in pieces:
        at += len(piece)
        ends.append(at)
    return ends


def test_the_changed_lines_tokens_speak_for_the_edit() -> None:
    updated = CURRENT.replace("b = 2", "b = 20")
    # One token per line but the changed one, written in three tokens.
    pieces = ["a = 1\n", "b = ", "20", "\n", "c = 3\n", "d = 4\n"]
    logprobs = [-0.01, -0.2, -3.0, -0.1, -5.0, -0.01]  # unsure of "20", and of line c
    entropies = [0.1, 0.5, 2.0, 0.3, 4.0, 0.1]
    edit = minimal_edit(CURRENT, updated)
    assert edit is not None
    c = edit_confidence(CURRENT, updated, edit, _ends(pieces), logprobs, entropies, "stop")
    assert c.tokens == 3  # "b = ", "20", "\n": not line c's token
    assert c.min_logprob == -3.0
    assert c.mean_logprob == pytest.approx((-0.2 - 3.0 - 0.1) / 3)
    assert c.mean_entropy == pytest.approx((0.5 + 2.0 + 0.3) / 3)
    assert c.deleted_share == 0.0 and c.stop_reason == "stop"


def test_a_deletion_is_judged_by_the_line_the_rewrite_went_on_with() -> None:
    updated = CURRENT.replace("b = 2\n", "")
    pieces = ["a = 1\n", "c = 3\n", "d = 4\n"]
    edit = minimal_edit(CURRENT, updated)
    assert edit is not None
    c = edit_confidence(CURRENT, updated, edit, _ends(pieces), [-0.1, -2.0, -0.1], [0, 1, 0], "eos")
    assert c.tokens == 1 and c.min_logprob == -2.0  # "c = 3" came where "b = 2" was
    assert c.deleted_share == pytest.approx(6 / len(CURRENT))


def test_without_scores_the_edit_is_judged_by_its_shape() -> None:
    updated = CURRENT.replace("b = 2", "b = 20")
    edit = minimal_edit(CURRENT, updated)
    assert edit is not None
    c = edit_confidence(CURRENT, updated, edit, _ends([updated]), (), (), "stop")
    assert c.min_logprob is None and c.tokens == 1
    assert DEFAULT_GATE.shows(c)


def _confidence(min_p: float | None, deleted: float = 0.0) -> EditConfidence:
    low = None if min_p is None else math.log(min_p)
    return EditConfidence(low, low, 1.0, 3, deleted, "stop")


def test_the_gate_shows_confident_edits_and_holds_back_unsure_ones() -> None:
    gate = ShowGate(min_logprob=math.log(0.5), max_deleted_share=0.5)
    assert gate.shows(_confidence(0.9))
    assert gate.shows(_confidence(0.5))
    assert not gate.shows(_confidence(0.3))
    assert not gate.shows(_confidence(0.9, deleted=0.6))  # drops most of the window
    assert gate.shows(_confidence(None))  # no scores: the shape decides
    assert OPEN_GATE.shows(_confidence(0.01, deleted=1.0))


def test_confidence_to_json_rounds_and_names_every_field() -> None:
    c = EditConfidence(-0.123456, -0.1, 0.5, 4, 0.25, "stop")
    assert c.to_json() == {
        "min_logprob": -0.1235,
        "mean_logprob": -0.1,
        "mean_entropy": 0.5,
        "tokens": 4,
        "deleted_share": 0.25,
        "stop_reason": "stop",
    }
