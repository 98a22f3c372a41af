"""Show or stay quiet: features, the stored filter, learning, serving, exploration, stats.

The learner is checked on a synthetic log whose answer is known (long suggestions are
taken, short ones are not); the session with a scripted host and a real recording on a
temp dir, waiting for the recording thread with `Recording.flush` (bounded).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.feedback import (
    Recording,
    Shown,
    SuggestionRecord,
    Suppressed,
    feedback_dir,
    read_events,
    suggestion_records,
)
from lsp_server.index import WorkspaceScanner
from lsp_server.measure.feedback_stats import quiet_stats
from lsp_server.quiet.features import FEATURES, History, features
from lsp_server.quiet.filter import GLOBAL, QuietFilter, threshold
from lsp_server.quiet.learn import compare, examples, export, learn
from lsp_server.quiet.store import FilterFile, filter_path, write_filter
from lsp_server.session.documents import Change
from lsp_server.session.quiet import QuietGate
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from tests.fixtures.host import FakeCompletion, FakeHost, ScriptedCompleter
from tests.fixtures.quiet import FixedSource

F = {name: i for i, name in enumerate(FEATURES)}


def feature(x: list[float], name: str) -> float:
    return x[F[name]]


# -- features ---------------------------------------------------------------------------------


def test_features_read_the_suggestion_and_the_text_around_the_cursor() -> None:
    before = "def f(x):\n    y = x + 1\n    return "
    x = features(before, "\nz = 2", "y", "python")
    assert len(x) == len(FEATURES)
    assert feature(x, "short") == 1.0 and feature(x, "in_prefix") == 0.0
    assert feature(x, "line_start") == 0.0 and feature(x, "indent") == 1.0
    assert feature(x, "prose") == 0.0 and feature(x, "confident") == 0.0
    loop = features(before.replace("return ", ""), "", "y = x + 1", "python")
    assert feature(loop, "repeats_above") == 1.0 and feature(loop, "line_start") == 1.0
    closing = features("print(f(x", "", "))", "python")
    assert feature(closing, "closing_only") == 1.0 and feature(closing, "alnum_share") == 0.0
    prose = features("# Title\n\nSome ", "", "words here", "markdown")
    assert feature(prose, "prose") == 1.0 and feature(prose, "words") == pytest.approx(math.log(3))


def test_features_take_the_models_confidence_when_the_engine_gives_it() -> None:
    x = features("a = ", "", "compute()", "python", logprobs=(-0.1, -2.0), entropies=(0.5, 1.5))
    assert feature(x, "confident") == 1.0
    assert feature(x, "mean_logprob") == pytest.approx(-1.05)
    assert feature(x, "min_logprob") == -2.0 and feature(x, "first_logprob") == -0.1
    assert feature(x, "mean_entropy") == 1.0 and feature(x, "max_entropy") == 1.5


def test_features_read_a_bounded_slice_of_a_long_document() -> None:
    near = "value = compute(\n    "
    assert features("x" * 100_000 + "\n" + near, "", "arg)", "python") == features(
        near, "", "arg)", "python"
    )


def test_history_rejects_a_suggestion_once_the_next_one_in_its_document_is_shown() -> None:
    history = History()
    assert history.rates("a") == pytest.approx((0.25, 0.25, 0.0))
    history.shown("a", "1")
    history.shown("a", "2")  # 1 was not taken
    history.accepted("2")
    history.accepted("2")  # twice: counted once
    history.shown("b", "3")
    recent, file_a, since = history.rates("a")
    assert recent == pytest.approx((1 + 1) / (2 + 4)) and file_a == recent
    assert since == 0.0
    history.shown("b", "4")  # 3 rejected
    assert history.rates("b")[1] == pytest.approx(1 / 5) and history.rates("b")[2] > 0


# -- the stored filter --------------------------------------------------------------------------


def logistic(intercept: float, **weights: float) -> QuietFilter:
    w = tuple(weights.get(name, 0.0) for name in FEATURES)
    return QuietFilter("logistic", weights=w, intercept=intercept)


def test_the_threshold_is_the_rewards_break_even() -> None:
    # Shown: 1 - q if accepted, -q if not; silent: 0. Showing pays iff P >= q.
    q = threshold(25)
    assert q == 0.25
    p = q
    assert p * (1 - q) - (1 - p) * q == pytest.approx(0.0)
    assert threshold(0) == 0.0


def test_a_stored_filter_round_trips_and_scores_the_same() -> None:
    quiet = logistic(-1.0, chars=0.8, short=-2.0)
    quiet = QuietFilter(
        "logistic",
        mean=tuple(0.5 for _ in FEATURES),
        scale=tuple(2.0 for _ in FEATURES),
        weights=quiet.weights,
        intercept=-1.0,
        calibration=(0.9, 0.1),
        learned={"learner": "logistic"},
    )
    back = QuietFilter.from_json(quiet.to_json())
    x = features("a = ", "", "compute(x, y)", "python")
    assert back == quiet and back.score(x) == quiet.score(x)
    assert 0.0 < back.score(x) < 1.0


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not json", "not JSON"),
        ('{"format": "something.else", "v": 1}', "not a codetailor quiet filter"),
        ("[1, 2]", "not a codetailor quiet filter"),
        ('{"format": "codetailor.quiet", "v": 99, "kind": "logistic"}', "version 99"),
        (
            '{"format": "codetailor.quiet", "v": 1, "kind": "logistic", "features": ["chars"],'
            ' "weights": [1, 2], "intercept": 0}',
            "expected 1 numbers",
        ),
        (
            '{"format": "codetailor.quiet", "v": 1, "kind": "logistic", "features": ["mood"],'
            ' "weights": [1], "intercept": 0}',
            "does not compute: mood",
        ),
        (
            '{"format": "codetailor.quiet", "v": 1, "kind": "trees", "features": ["chars"],'
            ' "trees": [{"feature": [0], "threshold": [1], "left": [0], "right": [0],'
            ' "value": [1]}], "learning_rate": 0.1, "init": 0}',
            "points outside the tree",
        ),
    ],
)
def test_a_corrupt_or_foreign_filter_is_refused_with_one_line(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as info:
        QuietFilter.from_json(text)
    assert "\n" not in str(info.value)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_filter_file_is_global_until_learned_reloaded_and_refused(tmp_path: Path) -> None:
    clock = Clock()
    source = FilterFile(tmp_path / "home", clock=clock)
    root = tmp_path / "repo"
    source.start(root)
    assert source.current() is GLOBAL
    path = filter_path(root, tmp_path / "home")
    assert path.parent == feedback_dir(root, tmp_path / "home")
    write_filter(path, logistic(3.0))
    assert source.current() is GLOBAL  # looked less than RELOAD_S ago
    clock.now += 5
    assert source.current() == logistic(3.0)
    path.write_text('{"format": "codetailor.quiet", "v": 1, "kind": "oops"')
    clock.now += 5
    assert source.current() is None  # refused: serve unfiltered
    assert "refused" in source.status()["problem"] and source.status()["filter"] == "none (refused)"
    path.unlink()
    clock.now += 5
    assert source.current() is GLOBAL


def test_the_global_rule_hides_what_nobody_takes_and_reads_the_models_confidence() -> None:
    assert GLOBAL.score(features("f(x", "", "))", "python")) == 0.0
    assert GLOBAL.score(features("x = 1\n", "", "x = 1", "python")) == 0.0
    plain = features("x = ", "", "compute()", "python")
    assert GLOBAL.score(plain) == 0.5  # nothing to go on: shown at the default quietness
    sure = features("x = ", "", "compute()", "python", logprobs=(-0.1, -0.1))
    unsure = features("x = ", "", "compute()", "python", logprobs=(-3.0, -2.0))
    assert GLOBAL.score(sure) == pytest.approx(math.exp(-0.1))
    assert GLOBAL.score(unsure) < threshold(25) < GLOBAL.score(sure)


# -- learning -----------------------------------------------------------------------------------


def synthetic_log(n: int, seed: int = 0, explored: float = 0.0) -> list[SuggestionRecord]:
    """A log whose answer is known: a suggestion of 12+ characters is taken 70% of the
    time, a shorter one 10%; with `explored`, that share of the short ones were shown for
    exploration (p_show 0.05) and the rest of the short ones are absent (suppressed)."""
    rng = random.Random(seed)
    records = []
    for i in range(n):
        long = rng.random() < 0.5
        text = "compute_total(a, b)" if long else rng.choice(["x)", "ab", "y + 1", "if a"])
        quiet = None
        if explored and not long:
            if rng.random() >= explored:
                continue
            quiet = {"explore": True, "p_show": 0.05, "filter": "learned"}
        shown = Shown(
            id=str(i),
            t=float(i),
            uri=f"file:///r/f{i % 7}.py",
            language="python",
            prefix="def f(a, b):\n    return ",
            suggestion=text,
            quiet=quiet,
        )
        record = SuggestionRecord(str(i), shown)
        if rng.random() < (0.7 if long else 0.1):
            record.accepted.append("full")
        records.append(record)
    return records


def test_the_learner_finds_the_known_answer_and_is_calibrated() -> None:
    records = synthetic_log(600)
    quiet = learn(records)
    assert quiet.learned["learner"] in ("logistic", "trees")
    scores = quiet.learned["validation"]
    assert set(scores) == {"logistic", "trees", "global", "everything"}
    # The winner earns the most reward on the log's latest quarter; here more than the
    # global rule (which shows every suggestion with a letter) and than showing everything.
    assert scores[quiet.learned["learner"]]["reward"] == max(scores[n]["reward"] for n in scores)
    assert quiet.learned["beats_global"]
    long = features("def f(a, b):\n    return ", "", "compute_total(a, b)", "python")
    short = features("def f(a, b):\n    return ", "", "ab", "python")
    assert quiet.score(long) > threshold(25) > quiet.score(short)
    # Calibrated: the predicted acceptance of each kind is near its true rate.
    data = examples(records)
    for kind in (True, False):
        rows = [
            (x, y) for x, y in zip(data.x, data.y, strict=True) if (x[F["chars"]] > 2.5) == kind
        ]
        predicted = sum(quiet.score(x) for x, _ in rows) / len(rows)
        observed = sum(y for _, y in rows) / len(rows)
        assert predicted == pytest.approx(observed, abs=0.08)
    back = QuietFilter.from_json(quiet.to_json())
    assert back.score(long) == pytest.approx(quiet.score(long))


def test_the_pure_python_trees_score_as_scikit_learn_does() -> None:
    import numpy as np

    from lsp_server.quiet.learn import _candidates, _fit

    data = examples(synthetic_log(300, seed=1))
    model = _fit(_candidates(0)["trees"], np.array(data.x), np.array(data.y), data.weight)
    flat = export("trees", model)
    expected = model.decision_function(np.array(data.x))
    assert [flat.raw(x) for x in data.x] == pytest.approx(list(expected), abs=1e-9)


def test_explored_suggestions_weigh_back_by_inverse_propensity() -> None:
    records = synthetic_log(1200, explored=0.05)
    data = examples(records)
    assert sorted(set(data.weight)) == [1.0, 20.0]
    explored = [w for w in data.weight if w > 1]
    # Short suggestions were about half; 5% of them were kept, each standing for 20.
    assert 20 < len(explored) < 40
    weighted_short = sum(explored)
    assert weighted_short == pytest.approx(len(data.weight) - len(explored), rel=0.35)
    scores = compare(data)
    assert all(s["validation"] > 0 for s in scores.values())


def test_a_log_too_small_to_learn_from_is_one_clear_error() -> None:
    with pytest.raises(CodetailorError, match="needs at least"):
        learn(synthetic_log(20))


# -- serving ------------------------------------------------------------------------------------


def start(
    sessions: list, home: Path, root: Path, quiet: QuietFilter | None, *script: object, **opts: Any
) -> tuple[Session, str]:
    host = FakeHost(ScriptedCompleter(*script))
    session = Session(
        Settings(context=False),
        host,
        recording=Recording(home),
        scanner=WorkspaceScanner(),
        quiet=FixedSource(quiet),
    )
    sessions.append((session, host))
    session.initialize(opts, root.as_uri(), "utf-16")
    uri = (root / "app.py").as_uri()
    session.open(uri, "x = ", 1, "python")
    return session, uri


def flushed(session: Session) -> bool:
    """Wait (bounded) until the session's recording thread has written what it was given."""
    recording = session.recording
    assert isinstance(recording, Recording)
    return recording.flush()


async def ask(session: Session, uri: str, text: str, version: int) -> tuple[str, str | None]:
    session.change(uri, version, [Change(text)])
    request = session.request_at(uri, 0, len(text))
    assert request is not None
    return await session.suggest(request)


async def test_the_session_stays_quiet_with_reason_quiet_and_logs_the_decision(
    sessions, tmp_path: Path
) -> None:
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    never = logistic(-20.0)  # P(accept) ~ 0 everywhere
    session, uri = start(sessions, home, root, never, "foo(1)")
    session.quiet.explore = 0.0
    assert await ask(session, uri, "x = ", 2) == ("", None)
    status = session.status()
    assert status["emptyAnswers"]["quiet"] == 1 and status["counts"].get("shown", 0) == 0
    assert status["quiet"]["quiet"] == 1 and status["quiet"]["filter"] == "fixed"
    assert flushed(session)
    events = read_events(feedback_dir(root, home))
    assert [e.event for e in events] == ["suppressed"]
    hidden = events[0]
    assert isinstance(hidden, Suppressed) and hidden.suggestion == "foo(1)"
    assert hidden.quiet is not None and hidden.quiet["show"] is False
    assert hidden.quiet["score"] < 0.01 and hidden.quiet["threshold"] == 0.25
    assert set(hidden.quiet["features"]) == set(FEATURES)


async def test_a_shown_suggestion_carries_its_decision_and_feeds_the_history(
    sessions, tmp_path: Path
) -> None:
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    session, uri = start(sessions, home, root, logistic(20.0), "foo(1)", "bar(2)")
    text, id = await ask(session, uri, "x = ", 2)
    assert text == "foo(1)" and id
    session.accepted("inline", id)
    assert session.quiet.history.rates(uri)[0] > 0.25  # the acceptance counts
    assert flushed(session)
    shown = suggestion_records(read_events(feedback_dir(root, home)))[0].shown
    assert shown.quiet is not None and shown.quiet["show"] is True
    assert shown.quiet["filter"] == "learned" and shown.quiet["p_show"] == 1.0


class ConfidentCompleter(ScriptedCompleter):
    """A scripted completer whose answers carry the engine's per-token confidence."""

    def complete(self, text: str, offset: int, **kwargs: Any) -> Any:
        from dataclasses import dataclass

        from lsp_server.completion.generation import Generation

        @dataclass
        class Confident(FakeCompletion):
            generation: Generation | None = None

        plain = super().complete(text, offset, **kwargs)
        generation = Generation(
            [1, 2], "eos", 4, 0, 1.0, 1.0, logprobs=(-0.5, -1.5), entropies=(1.0, 2.0)
        )
        return Confident(plain.text, generation=generation)


async def test_the_generations_confidence_reaches_the_decision_and_the_log(tmp_path: Path) -> None:
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    host = FakeHost(ConfidentCompleter("compute(a)"))
    session = Session(
        Settings(context=False), host, recording=Recording(home), scanner=WorkspaceScanner()
    )
    try:
        session.initialize({}, root.as_uri(), "utf-16")
        uri = (root / "app.py").as_uri()
        session.open(uri, "x = ", 1, "python")
        assert (await ask(session, uri, "x = ", 2))[0] == "compute(a)"  # the global rule
        assert flushed(session)
        shown = suggestion_records(read_events(feedback_dir(root, home)))[0].shown
        assert shown.quiet is not None and shown.quiet["filter"] == "global"
        logged = shown.quiet["features"]
        assert logged["confident"] == 1.0 and logged["mean_logprob"] == -1.0
        assert logged["max_entropy"] == 2.0
        assert shown.quiet["score"] == pytest.approx(math.exp(-1.0), abs=1e-4)
    finally:
        session.disconnect()
        host._pool.shutdown(wait=True, cancel_futures=True)


async def test_quietness_zero_and_a_refused_filter_show_everything(
    sessions, tmp_path: Path
) -> None:
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    session, uri = start(sessions, home, root, logistic(-20.0), "foo(1)", "bar(2)")
    session.configure({"quietness": 0})
    assert (await ask(session, uri, "x = ", 2))[0] == "foo(1)"
    refused, uri2 = start(sessions, tmp_path / "home2", root, None, "baz(3)")
    assert (await ask(refused, uri2, "x = ", 2))[0] == "baz(3)"
    assert refused.status()["emptyAnswers"]["quiet"] == 0


async def test_feedback_off_writes_nothing_while_the_filter_still_decides(
    sessions, tmp_path: Path
) -> None:
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir()
    session, uri = start(sessions, home, root, logistic(-20.0), "foo(1)", feedback=False)
    session.quiet.explore = 0.0
    assert await ask(session, uri, "x = ", 2) == ("", None)
    assert session.status()["emptyAnswers"]["quiet"] == 1
    assert flushed(session)
    assert not (feedback_dir(root, home) / "events.jsonl").exists()


def test_a_small_random_share_below_the_threshold_is_shown_for_exploration() -> None:
    from lsp_server.session.jobs import Request

    class Owner:
        pass

    gate = QuietGate(Owner(), FixedSource(logistic(-20.0)), explore=0.1, rng=random.Random(7))  # type: ignore[arg-type]
    request = Request("file:///a.py", "x = ", 4, 1, "python")
    decisions = [gate.decide(request, FakeCompletion("foo(1)"), 25) for _ in range(2000)]
    shown = [d for d in decisions if d is not None and d.show]
    assert 150 < len(shown) < 250  # about 10%
    assert all(d.explore and d.p_show == 0.1 for d in shown)
    assert all(d.p_show == 0.1 for d in decisions if d is not None)
    assert gate.counts["explored"] == len(shown)
    assert gate.decide(request, FakeCompletion(""), 25) is None  # nothing to decide


# -- stats --------------------------------------------------------------------------------------


def test_stats_show_shown_accepted_and_suppressed_before_and_after_the_filter() -> None:
    def record(i: int, quiet: dict[str, Any] | None, taken: bool) -> SuggestionRecord:
        r = SuggestionRecord(
            str(i), Shown(id=str(i), t=86400.0 * (i // 4), quiet=quiet, suggestion="abcd")
        )
        if taken:
            r.accepted.append("full")
        return r

    learned = {"filter": "learned", "show": True}
    records = [record(0, None, True), record(1, None, False), record(2, None, False)]
    records += [record(4, learned, True), record(5, learned | {"explore": True}, False)]
    hidden = [Suppressed(id="h", t=86400.0, quiet={"filter": "learned", "show": False})]
    stats = quiet_stats(records, hidden)
    before, after = stats["by_filter"]["none"], stats["by_filter"]["learned"]
    assert (before["shown"], before["accepted"], before["suppressed"]) == (3, 1, 0)
    assert (after["shown"], after["accepted"], after["suppressed"]) == (2, 1, 1)
    assert after["acceptance_rate"] == 0.5 and after["explored"] == 1
    days = stats["by_day"]
    assert [d["suppressed"] for d in days.values()] == [0, 1]
    assert json.dumps(stats)


def test_finetune_feedback_learns_the_filter_beside_the_log(tmp_path: Path) -> None:
    from finetune.config import PreferenceConfig
    from finetune.preference.command import learn_quiet
    from lsp_server.feedback import Accepted, EventLog

    log = EventLog(tmp_path / "log")
    for r in synthetic_log(300):
        log.append(r.shown)
        if r.was_accepted:
            log.append(Accepted(id=r.id, t=r.time + 1))
    log.close()
    cfg = PreferenceConfig(
        repo=str(tmp_path), adapter=str(tmp_path / "a"), log_dir=str(tmp_path / "log")
    )
    report = learn_quiet(cfg)
    assert (
        report["stored"]
        and report["examples"] == 300
        and report["path"] == str(tmp_path / "log" / "quiet.json")
    )
    assert QuietFilter.from_json((tmp_path / "log" / "quiet.json").read_text()).learned["learner"]
    empty = PreferenceConfig(repo=str(tmp_path), adapter="a", log_dir=str(tmp_path / "none"))
    assert "needs at least" in learn_quiet(empty)["error"]


# -- the paired offline measurement ---------------------------------------------------------------


def test_the_offline_arms_are_paired_on_the_same_places() -> None:
    from lsp_server.measure.offline_user import Offered, Place
    from lsp_server.measure.quiet_offline import QuietArms, quiet_report

    truth = "result = compute_total(a, b)\n"
    places, offered = [], []
    for i in range(40):
        places.append(Place("m.py", "def f(a, b):\n    \n", 17, truth))
        # Even places: the right long suggestion; odd ones: a wrong lone bracket.
        offered.append(Offered("result = compute_total(a, b)" if i % 2 == 0 else "))"))
    offered[1] = Offered("")  # nothing offered: shown by no arm
    hides_short = logistic(3.0, short=-10.0)
    report = quiet_report(places, offered, QuietArms(hides_short, 25), min_chars=4)
    unfiltered, filtered, rule = report["unfiltered"], report["filtered"], report["global"]
    assert (unfiltered["shown"], unfiltered["accepted"]) == (39, 20)
    assert (filtered["shown"], filtered["accepted"]) == (20, 20)
    assert filtered["accepted_chars"] == unfiltered["accepted_chars"] == 20 * len(truth.strip())
    assert (rule["shown"], rule["accepted"]) == (20, 20)  # the rule hides the brackets too
    same = report["paired"]["filtered_vs_global"]
    assert same["hid_rejected"] == same["hid_accepted"] == 0
    assert same["reward_difference"] == 0 and same["reward_difference_95"] == [0, 0]
    paired = report["paired"]["filtered_vs_unfiltered"]
    assert paired["acceptance_rate_ratio"] == pytest.approx((20 / 20) / (20 / 39), abs=1e-3)
    assert paired["accepted_chars_ratio"] == 1.0
    assert paired["hid_rejected"] == 19 and paired["hid_accepted"] == 0
    assert paired["reward_difference"] == 19 * 0.25
    low, high = paired["reward_difference_95"]
    assert 0 < low <= 19 * 0.25 <= high
    low, high = paired["acceptance_rate_ratio_95"]
    assert low <= paired["acceptance_rate_ratio"] <= high


def test_a_filter_that_does_not_beat_the_global_rule_is_not_stored(tmp_path: Path) -> None:
    from lsp_server.feedback import Accepted, EventLog
    from lsp_server.quiet.learn import learn_for_repo

    # Nine in ten taken, whatever the suggestion: worth showing every time, as the global
    # rule does, so the learned filter cannot earn more.
    rng = random.Random(3)
    log = EventLog(tmp_path / "log")
    for i in range(300):
        log.append(Shown(id=str(i), t=float(i), uri="file:///r/a.py", suggestion="compute(a, b)"))
        if rng.random() < 0.9:
            log.append(Accepted(id=str(i), t=i + 0.5))
    log.close()
    report = learn_for_repo(tmp_path, tmp_path / "log")
    assert not report["beats_global"] and not report["stored"]
    assert not (tmp_path / "log" / "quiet.json").exists()
    assert learn_for_repo(tmp_path, tmp_path / "log", force=True)["stored"]
    assert (tmp_path / "log" / "quiet.json").exists()


def test_feedback_learn_says_in_one_line_why_it_cannot_learn_and_what_it_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsp_server.cli import main
    from lsp_server.feedback import Accepted, EventLog

    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    repo = tmp_path / "repo"
    repo.mkdir()
    assert main(["feedback", "learn", str(repo)]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs at least" in err and "\n" not in err
    log = EventLog(feedback_dir(repo, tmp_path / "home"))
    for r in synthetic_log(400):
        log.append(r.shown)
        if r.was_accepted:
            log.append(Accepted(id=r.id, t=r.time + 1))
    log.close()
    assert main(["feedback", "learn", str(repo)]) == 0
    out = capsys.readouterr().out
    assert "kept logistic" in out or "kept trees" in out
    assert filter_path(repo, tmp_path / "home").exists()
