"""Next edits in the session: edit history, versions, supersede, stale, cancel, empty
answers by reason, and where the edit lands in the document (no server, no model)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import pytest

from lsp_server.completion.next_edit_gate import EditConfidence
from lsp_server.feedback import Recording, feedback_dir, read_events
from lsp_server.feedback.events import NextEditShown
from lsp_server.index import WorkspaceScanner
from lsp_server.session.documents import Change, Position
from lsp_server.session.edit_history import EditHistory
from lsp_server.session.next_edits import ShownEdit
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from tests.fixtures.next_edits import Host, ScriptedPredictor

T = TypeVar("T")
BOUND_S = 10.0
URI = "file:///work/app.py"
TEXT = "".join(f"x{i} = value({i})\n" for i in range(30))


def rename(window: str) -> str:
    return window.replace("value(12)", "value(twelve)")


def make(rewrite: Callable[[str], str] = rename, **settings: Any) -> tuple[Session, Host]:
    host = Host(ScriptedPredictor(rewrite))
    session = Session(Settings(context=False, **settings), host, head_text=lambda path: None)
    session.open(URI, TEXT, 1, "python")
    return session, host


def type_at(session: Session, line: int, character: int, text: str, version: int) -> None:
    at = Position(line, character)
    session.change(URI, version, [Change(text, at, at)])


async def test_the_edit_lands_where_the_model_put_it_with_the_version_echoed() -> None:
    session, host = make()
    type_at(session, 10, 0, "# ", 2)
    shown = await session.next_edits.suggest(URI, 2, 10, 2)
    assert shown is not None and shown.version == 2 and shown.text == "twelve"
    doc = session.documents.get(URI)
    assert doc is not None
    assert doc.text[shown.start : shown.end] == "12"
    assert doc.text[: shown.start].endswith("x12 = value(")
    request = host.predictor.requests[-1]
    assert request.window.current.count("\n") == 11  # 5 above, the cursor's line, 5 below
    assert [e.after for e in request.history] == ["# x10 = value(10)\n"]
    assert session.status()["nextEdit"]["counts"]["shown"] == 1


async def test_a_request_for_an_old_version_gets_nothing() -> None:
    session, _ = make()
    type_at(session, 10, 0, "#", 2)
    assert await session.next_edits.suggest(URI, 1, 10, 1) is None
    assert session.next_edits.empty["old_version"] == 1


async def test_nothing_to_suggest_unknown_documents_and_disabled_are_counted() -> None:
    session, _ = make(lambda window: window)
    assert await session.next_edits.suggest(URI, 1, 3, 0) is None
    assert await session.next_edits.suggest("file:///nope.py", 1, 0, 0) is None
    session.configure({"nextEdit": False})
    assert await session.next_edits.suggest(URI, 1, 3, 0) is None
    empty = session.status()["nextEdit"]["emptyAnswers"]
    assert (empty["no_edit"], empty["unknown_document"], empty["disabled"]) == (1, 1, 1)


async def test_an_edit_that_reverts_the_last_one_is_not_offered() -> None:
    session, _ = make(lambda window: window.replace("x10 = value(1)", "x10 = value(10)"))
    session.change(URI, 2, [Change("", Position(10, 13), Position(10, 14))])  # deletes "0"
    assert await session.next_edits.suggest(URI, 2, 10, 13) is None
    assert session.next_edits.empty["reverts"] == 1


@pytest.mark.parametrize("quietness", [25, 0])
async def test_an_edit_the_model_was_unsure_of_stays_quiet_unless_quietness_is_zero(
    quietness: int,
) -> None:
    class Unsure(ScriptedPredictor):
        def predict(self, request, *, cancel=None, time_budget=None):  # type: ignore[override]
            answer = super().predict(request, cancel=cancel, time_budget=time_budget)
            confidence = EditConfidence(-2.5, -0.4, 1.5, 7, 0.0, "stop")
            return replace(
                answer, edit=None, withheld=answer.edit, stop_reason="unsure", confidence=confidence
            )

    host = Host(Unsure(rename))
    settings = Settings(context=False, quietness=quietness)
    session = Session(settings, host, head_text=lambda path: None)
    session.quiet.explore = 0.0  # no exploration draw: the decision alone
    session.open(URI, TEXT, 1, "python")
    type_at(session, 10, 0, "# ", 2)
    shown = await session.next_edits.suggest(URI, 2, 10, 2)
    status = session.status()["nextEdit"]
    assert status["last"]["confidence"]["min_logprob"] == -2.5
    if quietness:  # the global rule: p = exp(-2.5) = 0.08 is below the flask-chosen 0.3
        assert shown is None
        assert status["emptyAnswers"]["quiet"] == 1 and "shown" not in status["counts"]
        assert session.status()["quiet"]["nextEdits"] == {"scored": 1, "quiet": 1, "explored": 0}
    else:  # no filter: every edit the rewrite made is shown
        assert shown is not None and status["counts"]["shown"] == 1


async def test_an_edit_while_the_model_runs_makes_the_answer_stale() -> None:
    session, host = make()
    host.predictor.gate = threading.Event()
    task = asyncio.ensure_future(session.next_edits.suggest(URI, 1, 10, 0))
    assert await asyncio.to_thread(host.predictor.started.wait, BOUND_S)
    type_at(session, 0, 0, "#", 2)
    host.predictor.gate.set()
    assert await asyncio.wait_for(task, BOUND_S) is None
    assert session.next_edits.empty["stale"] == 1


async def test_a_newer_request_supersedes_and_cancel_stops_the_model() -> None:
    session, host = make()
    host.predictor.gate = threading.Event()
    first = asyncio.ensure_future(session.next_edits.suggest(URI, 1, 10, 0))
    assert await asyncio.to_thread(host.predictor.started.wait, BOUND_S)
    second = asyncio.ensure_future(session.next_edits.suggest(URI, 1, 11, 0))
    assert await asyncio.wait_for(first, BOUND_S) is None
    assert session.next_edits.empty["superseded"] == 1
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(second, BOUND_S)
    assert session.next_edits.empty["cancelled"] == 1


def test_keystrokes_close_in_time_and_place_are_one_edit() -> None:
    now = [0.0]
    history = EditHistory(clock=lambda: now[0])
    text = "a = 1\nb = 2\nc = 3\n" + "\n" * 20 + "z = 9\n"
    history.opened(URI, text)
    typed = text
    for ch in "xyz":
        new = (
            typed.replace("b = 2", "b = 2" + ch, 1)
            if ch == "x"
            else typed.replace(
                "b = 2x" if ch == "y" else "b = 2xy", ("b = 2x" if ch == "y" else "b = 2xy") + ch
            )
        )
        history.changed(URI, typed, new)
        typed = new
        now[0] += 0.3
    assert [(e.before, e.after) for e in history.recent(URI)] == [("b = 2\n", "b = 2xyz\n")]
    far = typed.replace("z = 9", "z = 10")
    history.changed(URI, typed, far)  # far away: a new edit
    now[0] += 10
    later = far.replace("b = 2xyz", "b = 3")
    history.changed(URI, far, later)  # the same place, much later: a new edit
    assert [e.after for e in history.recent(URI)] == ["b = 2xyz\n", "z = 10\n", "b = 3\n"]
    back = later.replace("b = 3", "b = 2xyz")
    history.changed(URI, later, back)  # typed, then undone: the edit disappears
    assert [e.after for e in history.recent(URI)] == ["b = 2xyz\n", "z = 10\n"]


def test_the_original_is_head_where_git_has_it_else_the_opened_text() -> None:
    history = EditHistory()
    history.opened(URI, "opened\n")
    assert history.needs_head(URI) and history.original(URI) == "opened\n"
    history.set_head(URI, "committed\n")
    assert not history.needs_head(URI) and history.original(URI) == "committed\n"
    history.set_head(URI, None)
    assert history.original(URI) == "opened\n"


def logged_session(tmp_path: Path) -> tuple[Session, Host, str, Path]:
    """A session over a workspace under `tmp_path` that records its feedback log, with
    app.py (TEXT) open: the session, its host, the document's URI and the log's folder."""
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    host = Host(ScriptedPredictor(rename))
    session = Session(
        Settings(context=False), host, recording=Recording(home), scanner=WorkspaceScanner()
    )
    session.initialize({}, root.as_uri(), "utf-16")
    uri = (root / "app.py").as_uri()
    session.open(uri, TEXT, 1, "python")
    return session, host, uri, feedback_dir(root, home)


async def test_shown_accepted_and_dismissed_next_edits_reach_the_feedback_log(
    tmp_path: Path,
) -> None:
    session, _, uri, folder = logged_session(tmp_path)
    try:
        shown = await session.next_edits.suggest(uri, 1, 10, 0)
        assert shown is not None and shown.id is not None
        session.next_edits.accepted(shown.id)
        session.next_edits.accepted(shown.id)  # once only
        session.next_edits.accepted("never-shown")
        assert session.next_edits.counts["accepted"] == 1
        again = await session.next_edits.suggest(uri, 1, 10, 0)
        assert again is not None and again.id not in (None, shown.id)
        session.dismissed(again.id, "escape")
        assert session.recording.flush()
        log = read_events(folder)
        assert [(e.event, e.id) for e in log] == [
            ("next_edit_shown", shown.id),
            ("accepted", shown.id),
            ("next_edit_shown", again.id),
            ("dismissed", again.id),
        ]
        first = log[0]
        assert isinstance(first, NextEditShown) and first.path == "app.py"
        assert "value(twelve)" in first.updated and "value(12)" in first.current
        assert NextEditShown.from_json(first.to_json()) == first
    finally:
        session.disconnect()


@pytest.mark.parametrize(("encoding", "character"), [("utf-16", 14), ("utf-32", 13), ("utf-8", 16)])
def test_the_range_is_in_the_negotiated_encoding(encoding: str, character: int) -> None:
    from lsp_server.lsp.next_edit import edit_json, inline_completion_item

    text = "a = 1\ns = '😀'; t = 1\n"
    start = text.index("1\n", 6)
    shown = ShownEdit(URI, 7, start, start + 1, "2", text, "id-1")
    edit = edit_json(shown, encoding)
    assert edit["range"]["start"] == {"line": 1, "character": character}
    assert edit["range"]["end"] == {"line": 1, "character": character + 1}
    assert edit["textDocument"] == {"uri": URI, "version": 7}
    assert edit["command"]["arguments"] == ["id-1"]
    item = inline_completion_item(shown, start, encoding)
    assert item is not None and item.insert_text == "2"
    assert inline_completion_item(shown, start - 3, encoding) is None  # the cursor is elsewhere


async def test_a_completion_request_supersedes_the_next_edit_an_empty_one_asked_for() -> None:
    """The cursor moved without an edit: the next completion does not wait behind the
    next edit the previous, empty, completion asked for; an editor's own request stays."""
    session, host = make()
    host.predictor.gate = threading.Event()
    fallback = asyncio.ensure_future(session.next_edits.suggest(URI, None, 10, 0, fallback=True))
    assert await asyncio.to_thread(host.predictor.started.wait, BOUND_S)
    request = session.request_at(URI, 11, len("x11 = value(11)"))
    assert request is not None
    await asyncio.wait_for(session.complete(request), BOUND_S)
    assert await asyncio.wait_for(fallback, BOUND_S) is None
    assert session.next_edits.empty["superseded"] == 1

    own = asyncio.ensure_future(session.next_edits.suggest(URI, None, 10, 0))
    await asyncio.sleep(0.05)
    await asyncio.wait_for(session.complete(request), BOUND_S)
    host.predictor.gate.set()
    assert await asyncio.wait_for(own, BOUND_S) is not None
    assert session.next_edits.empty["superseded"] == 1


async def test_an_empty_completions_next_edit_is_only_its_cursor_line_offered_inline(
    tmp_path: Path,
) -> None:
    """Asked for by an empty completion (`fallback`), for a client that draws only inline
    completions: the rewrite covers the cursor's line and one each side, and an edit that
    could not be offered there (another line) is neither shown nor logged."""
    session, host, uri, folder = logged_session(tmp_path)
    try:
        # The cursor in "x12 = value(12)": the rename is on its line and holds it.
        at = len("x12 = value(1")
        shown = await session.next_edits.suggest(uri, None, 12, at, fallback=True)
        assert shown is not None and shown.text == "twelve"
        assert shown.fits_inline(TEXT.index("x12 = ") + at)
        window = host.predictor.requests[-1].window.current
        assert window == "x11 = value(11)\nx12 = value(12)\nx13 = value(13)\n"
        # The cursor one line below: the rewrite holds line 12, which is not the cursor's.
        assert await session.next_edits.suggest(uri, None, 13, 2, fallback=True) is None
        assert session.next_edits.empty["not_inline"] == 1
        # Asked for by the editor itself, the same edit is shown over the full window.
        assert await session.next_edits.suggest(uri, None, 13, 2) is not None
        assert host.predictor.requests[-1].window.current.count("\n") == 11
        assert session.next_edits.counts["shown"] == 2
        assert session.recording.flush()
        log = read_events(folder)
        assert [e.event for e in log] == ["next_edit_shown", "next_edit_shown"]
    finally:
        session.disconnect()
