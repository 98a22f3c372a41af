"""Typing-through: the rest of a shown completion, served without the model."""

from __future__ import annotations

from lsp_server.session.typing_through import Shown, ShownCompletions, rest_of_shown

DOC = "def add(a, b):\n    return \n\nprint(add(1, 2))\n"
CURSOR = DOC.index("return ") + len("return ")
SHOWN = Shown(DOC, CURSOR, "a + b")


def typed(chars: str) -> tuple[str, int]:
    return DOC[:CURSOR] + chars + DOC[CURSOR:], CURSOR + len(chars)


def test_typing_the_start_of_the_completion_returns_the_rest():
    assert rest_of_shown(SHOWN, *typed("a")) == " + b"
    assert rest_of_shown(SHOWN, *typed("a + ")) == "b"


def test_asking_again_at_the_same_place_returns_all_of_it():
    assert rest_of_shown(SHOWN, DOC, CURSOR) == "a + b"


def test_typing_something_else_misses():
    assert rest_of_shown(SHOWN, *typed("b")) is None
    assert rest_of_shown(SHOWN, *typed("a - ")) is None


def test_typing_all_of_it_leaves_nothing_to_serve():
    assert rest_of_shown(SHOWN, *typed("a + b")) is None


def test_an_edit_elsewhere_or_a_moved_cursor_misses():
    text, offset = typed("a")
    assert rest_of_shown(SHOWN, "# hi\n" + text, offset + 5) is None
    assert rest_of_shown(SHOWN, text + "x", offset) is None
    assert rest_of_shown(SHOWN, text, offset - 1) is None  # the cursor went back
    assert rest_of_shown(SHOWN, DOC, CURSOR - 1) is None


def test_backspacing_within_the_typed_part_still_fits():
    assert rest_of_shown(SHOWN, *typed("a ")) == "+ b"
    assert rest_of_shown(SHOWN, *typed("a")) == " + b"


def test_multiline_completions_continue_across_lines():
    shown = Shown("if x:\n", 6, "    y = 1\n    z = 2")
    assert rest_of_shown(shown, "if x:\n    y = 1\n", 16) == "    z = 2"


def test_the_store_is_per_document_bounded_and_counts_hits():
    store = ShownCompletions(capacity=2)
    store.remember("a", DOC, CURSOR, "a + b")
    store.remember("b", DOC, CURSOR, "x")
    store.remember("c", DOC, CURSOR, "y")
    assert len(store) == 2
    assert store.lookup("a", *typed("a")) is None  # evicted, the oldest
    assert store.lookup("c", DOC, CURSOR) == "y"
    assert store.hits == 1
    store.remember("c", DOC, CURSOR, "")  # an empty completion forgets
    store.forget("b")
    assert len(store) == 0
