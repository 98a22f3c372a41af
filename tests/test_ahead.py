"""Where to warm: the cursor after an edit, and when a move needs another window."""

from __future__ import annotations

from lsp_server.completion.window import WINDOW_STEP_LINES
from lsp_server.session.ahead import WarmPlan, edit_cursor
from lsp_server.session.documents import Change, Position


def test_the_cursor_stands_after_the_inserted_text() -> None:
    text = "a = 1\nb = 22\nc = 3\n"  # after inserting "22" at line 1, column 4
    assert edit_cursor(text, Change("22", Position(1, 4), Position(1, 4)), "utf-16") == (12, 1, 0)
    pasted = "a = 1\nx\ny\nb = 2\n"  # "x\ny\n" pasted at the start of line 1
    assert edit_cursor(pasted, Change("x\ny\n", Position(1, 0), Position(1, 0)), "utf-16") == (
        len("a = 1\nx\ny\n"),
        3,
        2,
    )
    deleted = "a = 1\n"  # lines 1..3 deleted
    assert edit_cursor(deleted, Change("", Position(1, 0), Position(3, 0)), "utf-16") == (6, 1, 2)
    assert edit_cursor("whole", Change("whole"), "utf-16") is None


def test_the_cursor_counts_utf16_columns() -> None:
    text = "s = '😀x'"
    cursor = edit_cursor(text, Change("x", Position(0, 7), Position(0, 7)), "utf-16")
    assert cursor == (len(text) - 1, 0, 0)


def test_a_plan_warms_on_focus_on_a_far_move_and_on_many_lines() -> None:
    plan = WarmPlan()
    plan.opened("a", 100)
    assert not plan.moved("a", 100 - WINDOW_STEP_LINES + 1, 0)  # still near
    assert plan.moved("a", 10, 0)  # far: another window
    assert not plan.moved("a", 12, 1)  # typing Enter
    assert plan.moved("a", 12, 2)  # a paste of lines
    assert plan.moved("b", 0, 0)  # another document: focus
    plan.asked("a", 12)  # a request prefills its own window
    assert not plan.moved("a", 13, 0)
