"""The session's completion policy against a scripted model host: no server, no model.

The fakes live in tests/fixtures/host.py: the completer follows a script, one
step per call; the host keeps background jobs (warming, the next suggestion)
until a test runs them. Tests wait on events and futures, never on time.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lsp_server.completion.completer import Completer
from lsp_server.completion.prompt import PREFIX_ONLY
from lsp_server.model.engine import Engine
from lsp_server.session.accepts import AcceptLedger
from lsp_server.session.counts import EMPTY_REASONS
from lsp_server.session.documents import Change, Position
from lsp_server.session.session import Request, Session
from lsp_server.session.settings import Settings
from lsp_server.spec import Holding, ModelSpec
from tests.fixtures.fakes import CharTokenizer, FakeBackend
from tests.fixtures.host import (
    BLOCK,
    BOUND_S,
    FAIL,
    TIME,
    FakeCompletion,
    FakeHost,
    ScriptedCompleter,
)

URI = "file:///work/app.py"
TEXT = "x = "


@pytest.fixture
def make() -> Iterator[Callable[..., tuple[Session, FakeHost]]]:
    hosts: list[FakeHost] = []

    def build(*script: object, ready: bool = True) -> tuple[Session, FakeHost]:
        host = FakeHost(ScriptedCompleter(*script) if ready else None)
        hosts.append(host)
        session = Session(Settings(context=False), host)
        session.open(URI, TEXT, 1, "python")
        return session, host

    yield build
    for host in hosts:
        host._pool.shutdown(wait=True, cancel_futures=True)


def scripted(host: FakeHost) -> ScriptedCompleter:
    assert isinstance(host.completer, ScriptedCompleter)
    return host.completer


def edit(session: Session, text: str, version: int = 2) -> None:
    session.change(URI, version, [Change(text)])


def request(session: Session, character: int = len(TEXT)) -> Any:
    req = session.request_at(URI, 0, character)
    assert req is not None
    return req


def empties(session: Session) -> dict[str, int]:
    return {k: v for k, v in session.status()["emptyAnswers"].items() if v}


async def test_a_finished_generation_is_shown_and_counted(make):
    session, host = make("hello")
    assert await session.complete(request(session)) == "hello"
    assert session.counts["shown"] == 1 and session.counts["requests"] == 1
    assert session.jobs.last_generation is not None and session.jobs.last_generation["request"] == 1
    assert empties(session) == {}


async def test_a_newer_request_supersedes_the_running_one(make):
    session, host = make(BLOCK, "second")
    first = asyncio.create_task(session.complete(request(session)))
    call = await scripted(host).call(0)
    second = asyncio.create_task(session.complete(request(session, 3)))
    assert await asyncio.wait_for(first, BOUND_S) == ""
    assert call.cancel.is_set()
    assert await asyncio.wait_for(second, BOUND_S) == "second"
    assert empties(session) == {"superseded": 1}
    assert session.status()["counts"]["dropped"] == 1 and session.counts["shown"] == 1


async def test_cancel_request_stops_the_model_and_counts_it(make):
    session, host = make(BLOCK)
    task = asyncio.create_task(session.complete(request(session)))
    call = await scripted(host).call(0)
    assert session.status()["generating"] == 1  # what the e2e tests wait for
    task.cancel()  # what pygls does on $/cancelRequest
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(host.futures[0].result, BOUND_S)  # the job has ended
    assert call.cancel.is_set()
    assert empties(session) == {"cancelled": 1}
    assert session.empty["cancelled"] == 1
    assert session.inflight == {} and session.status()["generating"] is None
    # the cancelled generation is still recorded, as the status shows it
    assert session.jobs.last_generation is not None
    assert session.jobs.last_generation["stop_reason"] == "cancelled"


async def test_an_edit_during_generation_drops_the_answer_as_stale(make):
    session, host = make(BLOCK)
    task = asyncio.create_task(session.complete(request(session)))
    call = await scripted(host).call(0)
    edit(session, "# edited\nx = ")
    assert await asyncio.wait_for(task, BOUND_S) == ""
    assert call.cancel.is_set()  # the edit stopped the model, too
    assert empties(session) == {"stale": 1}
    assert session.status()["counts"]["dropped"] == 1  # every dropped answer, whatever its reason


async def test_a_revision_change_alone_drops_the_answer(make):
    """Even if nothing cancelled it, an answer for an older revision is not shown."""
    session, host = make("late")
    gate = threading.Event()
    completer = scripted(host)
    original = completer.complete

    def gated(*args: Any, **kwargs: Any) -> FakeCompletion:
        assert gate.wait(BOUND_S)
        return original(*args, **kwargs)

    completer.complete = gated  # type: ignore[method-assign]
    task = asyncio.create_task(session.complete(request(session)))
    assert session.documents.change(URI, 2, [Change("y = ")])  # behind the session's back
    gate.set()
    assert await asyncio.wait_for(task, BOUND_S) == ""
    assert empties(session) == {"stale": 1}
    assert session.counts["shown"] == 0


async def test_closing_the_document_drops_the_answer(make):
    session, host = make(BLOCK)
    task = asyncio.create_task(session.complete(request(session)))
    await scripted(host).call(0)
    session.close(URI)
    assert await asyncio.wait_for(task, BOUND_S) == ""
    assert empties(session) == {"closed": 1}


async def test_typing_through_a_shown_completion_skips_the_model(make):
    session, host = make("hello")
    assert await session.complete(request(session)) == "hello"
    for typed in ("h", "he", "hel"):
        edit(session, TEXT + typed, 2 + len(typed))
        assert (
            await session.complete(request(session, len(TEXT) + len(typed)))
            == "hello"[len(typed) :]
        )
    assert len(host.futures) == 1 and len(scripted(host).calls) == 1
    assert session.counts["typed_through"] == 3
    assert session.status()["typingThroughHits"] == 3


async def test_once_another_adapter_answers_its_predecessors_suggestions_are_not_served(make):
    session, host = make("hello")
    assert await session.complete(request(session)) == "hello"
    host.completer = ScriptedCompleter("howdy")  # a swap: the new generation answers
    edit(session, TEXT + "h", 2)
    assert await session.complete(request(session, len(TEXT) + 1)) == "howdy"
    assert session.counts["typed_through"] == 0


async def test_typing_something_else_asks_the_model_again(make):
    session, host = make("hello", "world")
    assert await session.complete(request(session)) == "hello"
    edit(session, TEXT + "w")
    assert await session.complete(request(session, len(TEXT) + 1)) == "world"
    assert len(host.futures) == 2


async def test_requests_before_the_model_is_ready_are_empty_and_counted(make):
    session, host = make(ready=False)
    assert await session.complete(request(session)) == ""
    assert host.futures == []
    assert session.empty["not_ready"] == 1
    assert empties(session) == {"not_ready": 1}


async def test_disabled_binary_unknown_failed_and_empty_answers_have_their_reason(make):
    session, host = make(FAIL, "", TIME)
    assert session.request_at("file:///work/not-open.py", 0, 0) is None
    session.apply_settings(Settings(context=False, enable=False))
    assert await session.complete(request(session)) == ""
    session.apply_settings(Settings(context=False))
    session.open("file:///work/blob.bin", "\0\0\0", 1)
    blob = session.request_at("file:///work/blob.bin", 0, 1)
    assert blob is not None and await session.complete(blob) == ""
    assert await session.complete(request(session)) == ""  # the completer raises
    assert await session.complete(request(session)) == ""  # the model had nothing to say
    assert await session.complete(request(session)) == ""  # the time budget ran out
    assert empties(session) == {
        "unknown_document": 1,
        "disabled": 1,
        "binary": 1,
        "failed": 1,
        "empty_generation": 1,
        "time_budget": 1,
    }
    assert session.empty["failed"] == 1 and session.counts["shown"] == 0
    assert set(session.status()["emptyAnswers"]) == set(EMPTY_REASONS)
    # each empty answer is counted once, under its reason, not again among `counts`
    assert not set(session.status()["counts"]) & set(EMPTY_REASONS)


async def test_a_slow_or_failing_engine_answers_empty_with_its_reason(make):
    slow = FakeCompletion("", stop_reason="first_token")  # no first token in time
    failed = FakeCompletion("", stop_reason="error")  # the remote engine failed
    session, host = make(slow, failed)
    assert await session.complete(request(session)) == ""
    assert await session.complete(request(session)) == ""
    assert empties(session) == {"first_token_timeout": 1, "engine_error": 1}


async def test_acceptances_are_counted_with_a_rate(make):
    session, host = make("one", "two")
    assert session.status()["acceptanceRate"] is None
    text, first = await session.suggest(request(session))
    assert text == "one"
    edit(session, "y = ")
    text, second = await session.suggest(request(session))
    assert text == "two"
    session.accepted("inline", second)
    status = session.status()
    assert status["counts"]["accepted"] == 1 and status["counts"]["accepted_inline"] == 1
    assert status["acceptanceRate"] == 0.5
    session.accepted("something else", first)
    assert session.counts["accepted"] == 2 and "accepted_something else" not in session.counts


async def test_only_a_shown_suggestions_first_acceptance_counts(make):
    """Issue 28: any `codetailor.accepted` raised the count (5,000 accepts for 4 shown)."""
    session, host = make("one", "two", "three", "four")
    ids = []
    for i in range(4):
        edit(session, TEXT + " " * i, version=2 + i)
        text, id = await session.suggest(request(session, len(TEXT) + i))
        assert text and id is not None  # an id even where no feedback log records
        ids.append(id)
    for n in range(5_000):
        session.accepted("inline", ids[n % 2] if n % 3 else f"made-up-{n}")
    session.accepted("completion")  # no id
    assert session.counts["accepted"] == 2 and session.counts["accepted_inline"] == 2
    session.accepted("inline", ids[3], "word")
    session.accepted("inline", ids[3], "full")  # the rest of the same suggestion
    assert session.counts["accepted"] == 3
    assert session.status()["acceptanceRate"] == 0.75


def test_the_ledger_counts_each_shown_id_once_and_forgets_the_oldest() -> None:
    ledger = AcceptLedger(remember=2)
    a, b = ledger.shown(), ledger.shown("b")
    assert b == "b" and a != b
    assert ledger.accept(a) and not ledger.accept(a)
    assert not ledger.accept("never-shown") and not ledger.accept(None) and not ledger.accept(7)
    ledger.shown("c")  # two remembered: `a` goes
    assert ledger.accept("b") and ledger.accept("c")
    ledger.shown("d")
    ledger.shown("e")
    assert not ledger.accept("c") and ledger.accept("d")


async def test_a_new_model_setting_reloads_and_stops_running_generations(make):
    session, host = make(BLOCK)
    task = asyncio.create_task(session.complete(request(session)))
    call = await scripted(host).call(0)
    problems = session.configure({"codetailor": {"model": "other", "maxTokens": "many"}})
    assert len(problems) == 1 and "maxTokens" in problems[0]
    assert [s.model for s in host.loads] == ["other"]
    assert await asyncio.wait_for(task, BOUND_S) == ""
    assert call.cancel.is_set()
    assert empties(session) == {"settings": 1}


async def test_settings_that_do_not_touch_the_model_do_not_reload(make):
    session, host = make()
    session.configure({"maxTokens": 8, "multiline": "never"})
    assert host.loads == []
    assert session.settings.max_tokens == 8 and session.settings.mode == "line"
    session.configure({"maxTokens": None})  # null: back to the command line's value
    assert session.settings.max_tokens == Settings().max_tokens


def test_the_first_settings_load_the_model_even_if_unchanged():
    host = FakeHost(None, state="idle")
    session = Session(Settings(), host)
    assert session.initialize({}, None, "utf-8") == []
    assert len(host.loads) == 1 and session.encoding == "utf-8"


async def test_disconnect_stops_generations_and_the_workspace_scan(make):
    session, host = make(BLOCK)
    task = asyncio.create_task(session.complete(request(session)))
    call = await scripted(host).call(0)
    stopped = threading.Event()
    session.workspace.stop = stopped.set  # type: ignore[method-assign]
    session.disconnect()
    assert await asyncio.wait_for(task, BOUND_S) == ""
    assert call.cancel.is_set() and empties(session) == {"disconnected": 1}
    assert stopped.wait(BOUND_S)


def test_a_client_cannot_set_a_model_the_server_does_not_allow():
    host = FakeHost(None, state="ready")
    session = Session(Settings(model="tiny"), host, model_allowed=lambda spec: "/" not in spec)
    problems = session.configure({"model": "evil/model", "maxTokens": 8})
    assert len(problems) == 1 and "evil/model" in problems[0]
    assert "--allow-client-models" in problems[0]
    assert session.settings.model == "tiny" and session.settings.max_tokens == 8
    assert host.loads == []
    assert session.configure({"model": "local-dir"}) == []
    assert [s.model for s in host.loads] == ["local-dir"]
    assert session.configure({"model": "tiny"}) == []  # the command line's is always allowed
    assert [s.model for s in host.loads] == ["local-dir", "tiny"]


def test_allowing_client_models_does_not_let_a_client_pick_the_engine():
    """--allow-client-models names hub models; the engine (where the API key goes) needs
    --allow-client-engines (issue 28)."""
    host = FakeHost(None, state="ready")
    session = Session(Settings(model="tiny"), host, model_allowed=None, engines_allowed=False)
    problems = session.configure({"engine": "openai:http://attacker.example:8000"})
    assert len(problems) == 1 and "--allow-client-engines" in problems[0]
    assert session.settings.engine == "local" and host.loads == []
    assert session.configure({"model": "org/model"}) == []  # models stay allowed


def test_a_new_session_reloads_when_an_earlier_client_switched_the_model():
    host = FakeHost(None, state="ready")
    host.held = Holding(ModelSpec(model="other"))
    session = Session(Settings(model="tiny"), host)
    assert session.initialize({}, None, "utf-16") == []
    assert [s.model for s in host.loads] == ["tiny"]
    again = Session(Settings(model="tiny"), host)
    assert again.initialize({}, None, "utf-16") == []
    assert len(host.loads) == 1


def test_a_client_cannot_send_prompts_to_an_engine_of_its_choosing():
    """Over TCP a client may not point the server (and its API key) at its own URL."""
    host = FakeHost(None, state="ready")
    session = Session(
        Settings(model="tiny"),
        host,
        model_allowed=lambda spec: "/" not in spec,
        engines_allowed=False,
    )
    problems = session.configure({"engine": "openai:http://attacker.example:8000"})
    assert len(problems) == 1 and "engine" in problems[0]
    assert session.settings.engine == "local" and host.loads == []
    assert session.configure({"engine": "local"}) == []
    trusting = Session(Settings(model="tiny"), FakeHost(None, state="ready"))
    assert trusting.configure({"engine": "openai:http://127.0.0.1:8000"}) == []
    assert trusting.settings.engine == "openai:http://127.0.0.1:8000"


# -- work done before it is asked for -------------------------------------------------------

LONG = "".join(f"line_{i} = {i}\n" for i in range(60))
LONG_URI = "file:///work/long.py"


def edit_at(session: Session, uri: str, line: int, text: str, version: int) -> None:
    """Insert `text` at the start of `line`, as an editor sends a keystroke."""
    at = Position(line, 0)
    session.change(uri, version, [Change(text, at, at)])


async def test_opening_a_document_warms_its_window_in_the_background(make):
    session, host = make()
    completer = scripted(host)
    session.open(LONG_URI, LONG, 1, "python")
    assert host.futures == []  # nothing ran as a request
    assert host.run_background() == [len(TEXT), len(LONG)]  # the fixture's document, this one
    assert completer.warmed[-1] == (LONG, len(LONG))
    assert completer.calls == []  # warming generates nothing
    ahead = session.status()["ahead"]
    assert ahead["warms"] == 2 and ahead["warmsDone"] == 2 and ahead["warmedTokens"] > 0


async def test_edits_warm_when_the_cursor_moves_to_a_new_window_or_another_document(make):
    session, host = make()
    session.open(LONG_URI, LONG, 1, "python")
    host.run_background()
    edit_at(session, LONG_URI, 58, "x", 2)  # near the end, where the open warmed
    assert host.background == []
    edit_at(session, LONG_URI, 3, "y", 3)  # far from it: a new window
    edit_at(session, LONG_URI, 4, "a\nb\nc\n", 4)  # a paste of lines changes the window
    edit_at(session, URI, 0, "z", 2)  # another document: focus
    edit_at(session, LONG_URI, 5, "w", 5)  # and back
    assert len(host.background) == 4
    host.run_background()
    ahead = session.status()["ahead"]
    # Only the last warm per document runs: a newer one replaces it (2 done at open).
    assert ahead["warmsDone"] == 2 + 2 and ahead["warmsSkipped"] == 2


async def test_only_the_latest_documents_are_warmed(make):
    session, host = make()  # opens URI
    for i in range(3):
        session.open(f"file:///work/tab{i}.py", LONG, 1, "python")
    cancelled = [cancel.is_set() for _, cancel, _ in host.background]
    assert cancelled == [True, True, False, False]  # URI and tab0 gave way to tab1 and tab2
    host.run_background()
    assert session.status()["ahead"]["warmsSkipped"] == 2


async def test_a_request_makes_a_running_warm_of_its_document_yield(make):
    session, host = make("hello")
    host.run_background()
    edit_at(session, URI, 0, "# comment\n" * 3, 2)
    ((_, cancel, _),) = host.background
    assert await session.complete(request(session, 0)) == "hello"
    assert cancel.is_set()  # the real host's worker also sets it when any request arrives


async def test_a_request_while_the_model_loads_waits_for_it(make):
    session, host = make(ready=False)
    host.state = "loading"
    task = asyncio.create_task(session.complete(request(session)))
    await wait_until(lambda: session.counts["waited_for_model"] == 1)
    assert not task.done()
    host.completer, host.state = ScriptedCompleter("loaded"), "ready"
    assert await asyncio.wait_for(task, BOUND_S) == "loaded"
    assert empties(session) == {}


async def test_a_waiting_request_is_superseded_or_times_out(make):
    session, host = make(ready=False)
    host.state = "loading"
    first = asyncio.create_task(session.complete(request(session)))
    await wait_until(lambda: session.counts["waited_for_model"] == 1)
    second = asyncio.create_task(session.complete(request(session, 2)))
    assert await asyncio.wait_for(first, BOUND_S) == ""
    session.ready_wait_s = 0.0
    session.open(LONG_URI, LONG, 1)  # another document: no supersede
    third = Request(LONG_URI, LONG, 3, 0)
    assert await asyncio.wait_for(session.complete(third), BOUND_S) == ""  # waited its 0 s
    assert not second.done()  # still waiting, with the generous bound it started with
    host.state = "failed"  # a load that fails ends every wait
    assert await asyncio.wait_for(second, BOUND_S) == ""
    assert empties(session) == {"superseded": 1, "not_ready": 2}


async def test_the_next_suggestion_is_ready_when_the_shown_one_is_accepted(make):
    session, host = make("hello", "world")
    assert await session.complete(request(session)) == "hello"
    host.run_background()  # computes the suggestion after "x = hello"
    edit(session, TEXT + "hello")  # the user accepts
    session.accepted("inline")
    assert await session.complete(request(session, len(TEXT) + 5)) == "world"
    assert len(host.futures) == 1  # no request ran the model: it was computed ahead
    ahead = session.status()["ahead"]
    assert ahead["nextComputed"] == 2 and ahead["nextHits"] == 1  # and the one after "world"
    assert scripted(host).calls[1].text == TEXT + "hello"


async def test_a_next_suggestion_for_other_text_is_dropped(make):
    session, host = make("hello", "other")
    assert await session.complete(request(session)) == "hello"
    predicted = session.ahead.predicted[URI]
    edit(session, TEXT + "help")
    assert await session.complete(request(session, len(TEXT) + 4)) == "other"
    assert predicted.cancel.is_set()
    assert session.status()["ahead"]["nextHits"] == 0


async def test_no_generation_where_the_line_right_of_the_cursor_is_full(make):
    session, host = make("a")
    edit(session, "x = compute(value, other)")
    assert await session.complete(request(session, 4)) == ""  # before "compute(value, other)"
    assert host.futures == [] and empties(session) == {"no_help": 1}
    # A few characters besides closers still get a (one-line) completion, as scope.py decides.
    assert await session.complete(request(session, 19)) == "a"  # before "other)"
    assert session.empty["no_help"] == 1


async def test_a_request_superseded_during_its_prefill_leaves_it_for_the_next():
    reached, release = threading.Event(), threading.Event()

    def second_chunk(call: int) -> None:
        if call == 2:
            reached.set()
            assert release.wait(BOUND_S)

    engine = Engine(FakeBackend(on_forward=second_chunk), prefill_chunk=8)
    completer = Completer(engine, CharTokenizer(), PREFIX_ONLY)  # type: ignore[arg-type]
    host = FakeHost(None)
    host.completer = completer  # type: ignore[assignment]
    session = Session(Settings(context=False), host)
    session.open(LONG_URI, LONG, 1)
    host.background.clear()  # no warming here: the first request starts cold
    first = asyncio.create_task(session.complete(Request(LONG_URI, LONG, len(LONG), 0)))
    assert await asyncio.to_thread(reached.wait, BOUND_S)
    second = asyncio.create_task(session.complete(Request(LONG_URI, LONG, len(LONG), 0)))
    await wait_until(lambda: session.counts["requests"] == 2)  # it superseded the first
    release.set()
    assert await asyncio.wait_for(first, BOUND_S) == ""
    await asyncio.wait_for(second, BOUND_S)
    assert session.jobs.last_generation is not None
    assert session.jobs.last_generation["cached_tokens"] == 16  # the two chunks the first one fed
    assert empties(session).get("superseded") == 1
    host._pool.shutdown(wait=True)


async def wait_until(predicate: Callable[[], bool]) -> None:
    """Wait (bounded) until `predicate` holds, letting the event loop run meanwhile."""
    for _ in range(int(BOUND_S / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the state the test waits for never came")


async def test_a_cursor_moved_to_a_new_window_warms_it(make):
    session, host = make()
    session.open(LONG_URI, LONG, 1, "python")
    host.run_background()
    session.cursor(LONG_URI, 58, 3)  # near where the open warmed
    assert host.background == []
    session.cursor(LONG_URI, 5, 3)
    host.run_background()
    assert scripted(host).warmed[-1] == (LONG, LONG.index("line_5") + 3)
    session.cursor("file:///work/not-open.py", 0, 0)  # ignored
    assert host.background == []
    assert session.status()["ahead"]["cursors"] == 3  # each report counted, warmed or not


async def test_a_cursor_reported_while_the_model_loads_is_warmed_once_it_is_ready(make):
    session, host = make("a", ready=False)
    session.open(LONG_URI, LONG, 1, "python")
    session.cursor(LONG_URI, 5, 3)  # nothing to warm with yet
    assert host.background == []
    host.completer = ScriptedCompleter("a")
    session.cursor(LONG_URI, 5, 3)  # the same line, reported again once loaded
    host.run_background()
    assert scripted(host).warmed[-1] == (LONG, LONG.index("line_5") + 3)
