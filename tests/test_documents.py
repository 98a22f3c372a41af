"""Documents and positions: UTF-16/8/32 columns, LSP line breaks, clamping, edits."""

from __future__ import annotations

import pytest

from lsp_server.session.documents import (
    Change,
    Documents,
    Position,
    apply_change,
    offset_at,
    position_at,
    prompt_safe,
    units,
    word_start,
)

EMOJI_LINE = 'x = "😋" + y\n'  # 😋 is outside the BMP: 2 UTF-16 units, 4 UTF-8 bytes


def test_units_per_encoding():
    assert units("😋", "utf-16") == 2
    assert units("😋", "utf-8") == 4
    assert units("😋", "utf-32") == 1
    assert units("é", "utf-16") == 1 and units("é", "utf-8") == 2


@pytest.mark.parametrize(("encoding", "column"), [("utf-16", 7), ("utf-8", 9), ("utf-32", 6)])
def test_the_column_after_an_emoji_depends_on_the_encoding(encoding, column):
    closing_quote = EMOJI_LINE.index('"', 5)
    assert offset_at(EMOJI_LINE, 0, column, encoding) == closing_quote
    assert position_at(EMOJI_LINE, closing_quote, encoding) == Position(0, column)


def test_a_column_inside_a_surrogate_pair_stands_before_the_character():
    assert offset_at(EMOJI_LINE, 0, 6, "utf-16") == EMOJI_LINE.index("😋")


def test_positions_past_the_line_or_the_document_are_clamped():
    text = "ab\ncd"
    assert offset_at(text, 0, 99) == 2
    assert offset_at(text, 1, 99) == 5
    assert offset_at(text, 7, 0) == 5
    assert offset_at(text, 0, -3) == 0
    assert position_at(text, 99) == Position(1, 2)


def test_only_lsp_line_breaks_count():
    text = "a\x0cb\u2028c\r\nd\re\nf"  # form feed and U+2028 are not LSP line breaks
    assert offset_at(text, 1, 0) == text.index("d")
    assert offset_at(text, 2, 0) == text.index("e")
    assert offset_at(text, 3, 1) == len(text)
    assert position_at(text, text.index("c")) == Position(0, 4)


def test_incremental_edits_apply_in_utf16_units():
    text = EMOJI_LINE + "z\n"
    edited = apply_change(text, "!", Position(0, 8), Position(0, 8), "utf-16")
    assert edited == 'x = "😋"! + y\nz\n'
    assert apply_change(text, "new", None, None, "utf-16") == "new"
    # a reversed range is read as the same range
    assert apply_change("abc", "", Position(0, 2), Position(0, 1), "utf-16") == "ac"


def test_the_store_applies_changes_in_order_and_counts_revisions():
    docs = Documents("utf-16")
    docs.open("file:///a.py", "ab\n", 1)
    changes = [
        Change("X", Position(0, 1), Position(0, 1)),
        Change("Y", Position(1, 0), Position(1, 0)),
    ]
    assert docs.change("file:///a.py", 2, changes)
    doc = docs.get("file:///a.py")
    assert (doc.text, doc.version, doc.revision) == ("aXb\nY", 2, 1)
    assert not docs.change("file:///other.py", 1, changes)
    docs.close("file:///a.py")
    assert docs.get("file:///a.py") is None and len(docs) == 0


def test_word_start_and_prompt_safe_text():
    assert word_start("x = foo_bar", 11) == 4
    assert word_start("x = ", 4) == 4
    assert word_start("ab\ncd", 5) == 3
    assert prompt_safe("a\ud800b") == "a\ufffdb"


def test_replacement_rewrites_the_word_before_the_cursor():
    from lsp_server.session.documents import Replacement, replacement

    assert replacement("x = foo_ba", 10, "r()") == Replacement(4, 10, "foo_bar()")
    assert replacement("x = ", 4, "1") == Replacement(4, 4, "1")
    assert replacement("print(na)", 8, "me") == Replacement(6, 8, "name")
    assert replacement("ab\ncd", 5, "e") == Replacement(3, 5, "cde")
