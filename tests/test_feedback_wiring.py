"""The session writes the local feedback log: a scripted host, the recorder on a temp dir.

Each suggestion shown gets an id; typing-through, `codetailor.accepted` and a newer
answer record what became of it under that id. Tests wait for the recording thread
with `Recording.flush` (bounded), never on time.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from lsp_server.completion.prompt import Snippet
from lsp_server.feedback import (
    FeedbackEvent,
    Recording,
    Retained,
    feedback_dir,
    read_events,
    suggestion_records,
)
from lsp_server.index import WorkspaceScanner
from lsp_server.session.documents import Change
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from tests.fixtures.host import FakeCompletion, FakeHost, ScriptedCompleter

SECRET = "AKIAIOSFODNN7EXAMPLE"


class ContextCompleter(ScriptedCompleter):
    """A scripted completer whose answers carry context snippets (nearest last)."""

    format = type("Format", (), {"name": "prefix-only"})()
    window_tokens = 256
    repo = "project"

    def complete(self, text: str, offset: int, **kwargs: Any) -> FakeCompletion:
        completion = super().complete(text, offset, **kwargs)
        completion.context = (Snippet("far.py", "far = 1\n"), Snippet("near.py", "near = 2\n"))  # type: ignore[attr-defined]
        return completion


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    return root


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def start(
    sessions: list, home: Path, root: Path | None, *script: object, **options: Any
) -> tuple[Session, str]:
    host = FakeHost(ContextCompleter(*script))
    session = Session(
        Settings(context=False), host, recording=Recording(home), scanner=WorkspaceScanner()
    )
    sessions.append((session, host))
    session.initialize(options, root.as_uri() if root else None, "utf-16")
    uri = ((root or home.parent) / "app.py").as_uri()
    session.open(uri, "x = ", 1, "python")
    return session, uri


async def ask(session: Session, uri: str, text: str, version: int) -> tuple[str, str | None]:
    session.change(uri, version, [Change(text)])
    request = session.request_at(uri, 0, len(text))
    assert request is not None
    return await session.suggest(request)


def events(session: Session, home: Path, root: Path) -> list[FeedbackEvent]:
    assert session.recording.flush()
    return read_events(feedback_dir(root, home))


async def test_shown_typed_through_accepted_and_superseded_land_with_their_ids(
    sessions, home, repo
):
    session, uri = start(sessions, home, repo, "foo(1)", "bar()", "baz")
    text, first = await ask(session, uri, "x = ", 2)
    assert text == "foo(1)" and first
    # Typing "fo" is served from the shown suggestion: same id, two characters typed.
    assert await ask(session, uri, "x = fo", 3) == ("o(1)", first)
    session.accepted("inline", first)
    text, second = await ask(session, uri, "x = foo(1)\ny = ", 4)
    assert text == "bar()" and second not in (None, first)
    text, third = await ask(session, uri, "x = foo(1)\ny = 2\nz = ", 5)
    assert text == "baz" and third not in (None, first, second)
    log = [(e.event, e.id) for e in events(session, home, repo)]
    assert log == [
        ("shown", first),
        ("typed_through", first),
        ("accepted", first),
        ("typed", first),  # its line is finished: what stands there now
        ("shown", second),  # the accepted first one is not superseded
        ("superseded", second),
        ("shown", third),
    ]
    typed = [e.text for e in events(session, home, repo) if e.event == "typed"]
    assert typed == ["foo(1)"]
    shown = events(session, home, repo)[0]
    assert shown.prefix == "x = " and shown.suggestion == "foo(1)"
    assert shown.path == "app.py" and shown.language == "python"
    assert shown.model == "fake" and shown.prompt_format == "prefix-only"
    assert shown.window_tokens == 256 and shown.repo == "project"
    assert shown.context == (("near.py", "near = 2\n"), ("far.py", "far = 1\n"))
    records = suggestion_records(events(session, home, repo))
    assert [r.was_accepted for r in records] == [True, False, False]


async def test_an_acceptance_names_its_suggestion_and_may_be_partial(sessions, home, repo):
    session, uri = start(sessions, home, repo, "foo(1) + 2")
    _, id = await ask(session, uri, "x = ", 2)
    session.accepted("inline", id, "word")
    session.accepted("inline", "not-a-shown-id")
    session.accepted("inline")  # no id: neither counted nor logged (issue 28)
    log = [(e.event, e.id, getattr(e, "kind", None)) for e in events(session, home, repo)]
    assert log == [("shown", id, None), ("accepted", id, "word")]
    assert session.counts["accepted"] == 1


async def test_accepted_text_is_followed_through_didchange_for_retention(sessions, home, repo):
    session, uri = start(sessions, home, repo, "foo(1)", "bar()")
    _, kept = await ask(session, uri, "x = ", 2)
    session.accepted("inline", kept)
    _, other = await ask(session, uri, "x = foo(1)\ny = ", 3)  # the editor inserted it
    session.accepted("inline", other)
    session.change(uri, 4, [Change("x = foo(1)\ny = 2\n")])  # ...and this one was undone
    assert session.recording.flush() and session.recording.recorder is not None
    # Two minutes on (the checks are due by the recorder's clock; no waiting here).
    session.recording.recorder.poll(now=time.time() + 200)
    retained = {
        (e.id, e.event): e.kept for e in events(session, home, repo) if isinstance(e, Retained)
    }
    assert retained == {
        (kept, "retained_30s"): True,
        (kept, "retained_120s"): True,
        (other, "retained_30s"): False,
        (other, "retained_120s"): False,
    }


async def test_a_secret_in_the_document_never_reaches_the_log(sessions, home, repo):
    session, uri = start(sessions, home, repo, "foo()")
    document = f'aws_key = "{SECRET}"\nx = '
    _, id = await ask(session, uri, document, 2)
    assert id is not None and session.recording.flush()
    written = b"".join(p.read_bytes() for p in home.rglob("*.jsonl"))
    assert b"foo()" in written and SECRET.encode() not in written


async def test_feedback_false_writes_nothing(sessions, home, repo):
    session, uri = start(sessions, home, repo, "foo()", feedback=False)
    text, id = await ask(session, uri, "x = ", 2)
    assert text == "foo()" and id is not None  # an id for the acceptance count, not logged
    session.accepted("inline", id)
    assert session.recording.flush()
    assert not home.exists()


async def test_turning_feedback_off_stops_the_log(sessions, home, repo):
    session, uri = start(sessions, home, repo, "foo()", "bar()")
    _, first = await ask(session, uri, "x = ", 2)
    session.configure({"feedback": False})
    _, second = await ask(session, uri, "y = ", 3)
    session.accepted("inline", first)
    assert second is not None and second != first  # an id for the count, not logged
    assert [(e.event, e.id) for e in events(session, home, repo)] == [("shown", first)]


async def test_without_a_workspace_root_nothing_is_recorded(sessions, home):
    session, uri = start(sessions, home, None, "foo()")
    text, id = await ask(session, uri, "x = ", 2)
    assert text == "foo()" and id is not None  # an id for the acceptance count, not logged
    assert not home.exists()


def test_retention_checks_are_polled_on_the_recording_thread(tmp_path: Path) -> None:
    """The recording thread answers due checks by itself; `poll` is what it calls."""
    recording = Recording(tmp_path, poll_s=0.01)
    recording.start(tmp_path / "repo", enabled=True)
    assert recording.recorder is not None
    polled = threading.Event()
    recording.recorder.poll = lambda now=None: polled.set()  # type: ignore[method-assign]
    assert polled.wait(5.0)
    recording.close()


async def test_a_dismissal_the_editor_reports_is_logged_once_and_not_superseded(
    sessions, home, repo
):
    session, uri = start(sessions, home, repo, "foo(1)", "bar()")
    _, first = await ask(session, uri, "x = ", 2)
    session.dismissed(first, "insert-leave")
    session.dismissed(first, "dismiss")  # already settled
    session.dismissed("not-a-shown-id")
    await ask(session, uri, "x = 1\ny = ", 3)
    log = [(e.event, e.id, getattr(e, "reason", None)) for e in events(session, home, repo)]
    assert log[:2] == [("shown", first, None), ("dismissed", first, "insert-leave")]
    assert ("superseded", first, None) not in log
    assert suggestion_records(events(session, home, repo))[0].dismissed
