"""Next edits through the show-or-stay-quiet filter: features, the global rule, the decision
and its log, exploration, a refused file, learning, and the offline arms on a fake engine."""

from __future__ import annotations

import math
import random
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lsp_server.completion.next_edit import (
    EditConfidence,
    EditWindow,
    NextEditAnswer,
    NextEditRequest,
    WindowEdit,
    minimal_edit,
)
from lsp_server.completion.next_edit_gate import DEFAULT_GATE
from lsp_server.errors import CodetailorError
from lsp_server.feedback import (
    Accepted,
    EventLog,
    Recording,
    feedback_dir,
    next_edit_records,
    read_events,
)
from lsp_server.feedback.events import NextEditShown, Suppressed
from lsp_server.index import WorkspaceScanner
from lsp_server.measure.quiet_offline import QuietArms
from lsp_server.quiet.edit_features import EDIT_FEATURES, edit_features
from lsp_server.quiet.filter import (
    GLOBAL,
    GLOBAL_NEXT_EDIT,
    QuietFilter,
    QuietFilters,
    Suggestions,
    threshold,
)
from lsp_server.quiet.learn import edit_examples, learn_edits, learn_for_repo
from lsp_server.quiet.store import FilterFile, filter_path, write_filter
from lsp_server.repo.edit_examples import NextEditExample
from lsp_server.session.documents import Change, Position
from lsp_server.session.quiet import QuietGate
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from tests.fixtures.next_edits import Host, ScriptedPredictor
from tests.fixtures.quiet import FixedSource

E = {name: i for i, name in enumerate(EDIT_FEATURES)}
WINDOW = "a = 1\nb = 2\nc = 3\nd = 4\n"
TEXT = "".join(f"x{i} = value({i})\n" for i in range(30))


def sure(p: float, stop: str = "stop") -> EditConfidence:
    """A confidence whose least probable changed-line token had probability `p`."""
    return EditConfidence(math.log(p), math.log(p) / 2, 0.4, 5, 0.0, stop)


# -- features and the global rule --------------------------------------------------------------


def test_edit_features_read_the_edit_its_place_and_the_models_confidence() -> None:
    start = WINDOW.index("3")
    edit = WindowEdit(start, start + 1, "30")  # line 2, the cursor at the end of line 0
    x = edit_features(WINDOW, 5, edit, sure(0.8), "python", history=(0.5, 0.25, 1.0))
    assert len(x) == len(EDIT_FEATURES)
    assert x[E["confident"]] == 1.0 and x[E["min_logprob"]] == pytest.approx(math.log(0.8))
    assert x[E["tokens"]] == pytest.approx(math.log1p(5)) and x[E["ended"]] == 1.0
    assert x[E["inserted_chars"]] == pytest.approx(math.log1p(2))
    assert x[E["removed_chars"]] == pytest.approx(math.log1p(1))
    assert (x[E["lines_changed"]], x[E["deletes_only"]], x[E["inserts_only"]]) == (1.0, 0.0, 0.0)
    assert x[E["distance"]] == pytest.approx(math.log1p(2))  # two lines below the cursor's
    assert (x[E["above"]], x[E["at_cursor"]], x[E["prose"]]) == (0.0, 0.0, 0.0)
    assert x[-3:] == [0.5, 0.25, 1.0]
    # A deletion above the cursor, from an engine without scores, in Markdown.
    gone = WindowEdit(0, 6, "")
    y = edit_features(WINDOW, WINDOW.index("d"), gone, None, "markdown")
    assert (y[E["confident"]], y[E["min_logprob"]], y[E["ended"]]) == (0.0, 0.0, 0.0)
    assert (y[E["deletes_only"]], y[E["above"]], y[E["prose"]]) == (1.0, 1.0, 1.0)
    assert y[E["deleted_share"]] == pytest.approx(6 / len(WINDOW))
    # An edit that holds the cursor, changing only whitespace.
    spaced = WindowEdit(1, 2, "  ")
    z = edit_features(WINDOW, 1, spaced, sure(0.5), "python")
    assert (z[E["at_cursor"]], z[E["blank_only"]], z[E["distance"]]) == (1.0, 1.0, 0.0)


@pytest.mark.parametrize("p", [0.02, 0.1, 0.3, 0.39, 0.41, 0.5, 0.95])
def test_the_next_edits_global_rule_is_the_flask_chosen_gate_at_the_default_quietness(
    p: float,
) -> None:
    edit = WindowEdit(0, 1, "z")
    x = edit_features(WINDOW, 0, edit, sure(p), "python")
    shown = GLOBAL_NEXT_EDIT.score(x) >= threshold(25)
    assert shown == DEFAULT_GATE.shows(sure(p))
    # A higher quietness asks for a surer edit; 0 < score <= 1 throughout.
    assert 0 < GLOBAL_NEXT_EDIT.score(x) <= 1
    if p < 0.6:
        assert GLOBAL_NEXT_EDIT.score(x) < threshold(50)


def test_an_edit_without_scores_is_shown_by_the_global_rule() -> None:
    x = edit_features(WINDOW, 0, WindowEdit(0, 1, "z"), None, "python")
    assert GLOBAL_NEXT_EDIT.score(x) >= threshold(25)


# -- the session's decision and its log ---------------------------------------------------------


class ConfidentPredictor(ScriptedPredictor):
    """Rewrites as scripted, and says how sure it was: `p` for its least probable token."""

    def __init__(self, p: float) -> None:
        super().__init__(lambda w: w.replace("value(12)", "value(twelve)"))
        self.p = p

    def predict(self, request: NextEditRequest, **kw: Any) -> NextEditAnswer:
        return replace(super().predict(request, **kw), confidence=sure(self.p))


def edit_session(
    sessions: list, tmp_path: Path, p: float, **settings: Any
) -> tuple[Session, str, Path]:
    root, home = tmp_path / "repo", tmp_path / "home"
    root.mkdir(exist_ok=True)
    host = Host(ConfidentPredictor(p))
    session = Session(
        Settings(context=False, **settings),
        host,
        recording=Recording(home),
        scanner=WorkspaceScanner(),
        head_text=lambda path: None,
    )
    sessions.append((session, host))
    session.quiet.explore = 0.0
    session.initialize({}, root.as_uri(), "utf-16")
    uri = (root / "app.py").as_uri()
    session.open(uri, TEXT, 1, "python")
    at = Position(10, 0)
    session.change(uri, 2, [Change("# ", at, at)])
    return session, uri, feedback_dir(root, home)


async def test_a_sure_edit_is_shown_and_logged_with_its_decision(
    sessions: list, tmp_path: Path
) -> None:
    session, uri, log = edit_session(sessions, tmp_path, 0.9)
    shown = await session.next_edits.suggest(uri, 2, 10, 2)
    assert shown is not None and shown.text == "twelve" and shown.id
    session.next_edits.accepted(shown.id)
    assert list(session.quiet.edit_history.recent) == [True]  # the next edits' own history
    assert list(session.quiet.history.recent) == []  # the completions' is untouched
    assert isinstance(session.recording, Recording) and session.recording.flush()
    events = read_events(log)
    [event] = [e for e in events if isinstance(e, NextEditShown)]
    quiet = event.quiet
    assert quiet is not None and quiet["show"] and quiet["filter"] == "global"
    assert DEFAULT_GATE.min_logprob is not None
    gate_p = math.exp(DEFAULT_GATE.min_logprob)
    assert quiet["score"] == pytest.approx(0.9 * 0.25 / gate_p, abs=1e-3)
    assert list(quiet["features"]) == list(EDIT_FEATURES)
    assert any(isinstance(e, Accepted) and e.id == shown.id for e in events)
    assert session.status()["quiet"]["nextEdits"] == {"scored": 1, "quiet": 0, "explored": 0}


async def test_an_unsure_edit_stays_quiet_and_is_logged_as_suppressed(
    sessions: list, tmp_path: Path
) -> None:
    session, uri, log = edit_session(sessions, tmp_path, 0.05)
    assert await session.next_edits.suggest(uri, 2, 10, 2) is None
    assert session.status()["nextEdit"]["emptyAnswers"]["quiet"] == 1
    assert isinstance(session.recording, Recording) and session.recording.flush()
    events = read_events(log)
    assert not [e for e in events if isinstance(e, NextEditShown)]
    [hidden] = [e for e in events if isinstance(e, Suppressed)]
    assert hidden.suggestions == "next_edit" and hidden.quiet is not None
    assert not hidden.quiet["show"] and "value(twelve)" in hidden.suggestion


async def test_feedback_off_writes_nothing_for_next_edits(sessions: list, tmp_path: Path) -> None:
    session, uri, log = edit_session(sessions, tmp_path, 0.05, feedback=False)
    assert await session.next_edits.suggest(uri, 2, 10, 2) is None
    session2, uri2, _ = edit_session(sessions, tmp_path, 0.9, feedback=False)
    assert await session2.next_edits.suggest(uri2, 2, 10, 2) is not None
    for s in (session, session2):
        assert isinstance(s.recording, Recording) and s.recording.flush()
    assert not (log / "events.jsonl").exists()


def hide_all(suggestions: Suggestions = "next_edit") -> QuietFilter:
    names = EDIT_FEATURES if suggestions == "next_edit" else GLOBAL.features
    weights = tuple(0.0 for _ in names)
    return QuietFilter(
        "logistic", features=names, weights=weights, intercept=-20.0, suggestions=suggestions
    )


def test_a_small_random_share_of_hidden_edits_is_shown_for_exploration() -> None:
    class Owner:
        pass

    source = FixedSource(None, hide_all())
    gate = QuietGate(Owner(), source, explore=0.1, rng=random.Random(5))  # type: ignore[arg-type]
    window = EditWindow(0, WINDOW, WINDOW, 0)
    edit = WindowEdit(0, 1, "z")
    decisions = [gate.decide_edit("u", window, edit, sure(0.9), "python", 25) for _ in range(2000)]
    shown = [d for d in decisions if d is not None and d.show]
    assert 150 < len(shown) < 250  # about 10%
    assert all(d.explore and d.p_show == 0.1 and d.filter == "learned" for d in shown)
    assert gate.edit_counts == {"scored": 2000, "quiet": 2000 - len(shown), "explored": len(shown)}
    assert gate.counts["scored"] == 0  # the completions' counts are apart
    assert gate.decide_edit("u", window, edit, sure(0.9), "python", 0) is None  # quietness 0


# -- the file: both kinds, and refusal -----------------------------------------------------------


def test_the_file_holds_a_filter_per_kind_and_refuses_a_bad_section(tmp_path: Path) -> None:
    both = QuietFilters(completion=hide_all("completion"), next_edit=hide_all())
    assert QuietFilters.from_json(both.to_json()) == both
    only_edits = QuietFilters.from_json(QuietFilters(next_edit=hide_all()).to_json())
    assert only_edits.completion is None and only_edits.for_("completion") is GLOBAL
    v1 = hide_all("completion").to_dict() | {"format": "codetailor.quiet", "v": 1}
    import json

    old = QuietFilters.from_json(json.dumps(v1))  # a version-1 file: the completions' filter
    assert old.completion == hide_all("completion") and old.next_edit is None
    bad = json.loads(both.to_json())
    bad["next_edit"]["features"][0] = "mood"
    with pytest.raises(ValueError, match="next_edit: features this codetailor does not") as info:
        QuietFilters.from_json(json.dumps(bad))
    assert "\n" not in str(info.value)
    # A refused file: the server serves both kinds unfiltered, and says why in one line.
    source = FilterFile(tmp_path / "home")
    root = tmp_path / "repo"
    source.start(root)
    assert source.current("next_edit") is GLOBAL_NEXT_EDIT
    path = filter_path(root, tmp_path / "home")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(bad))
    source._looked = float("-inf")
    assert source.current("next_edit") is None and source.current("completion") is None
    status = source.status()
    assert status["nextEditFilter"] == "none (refused)" and "\n" not in status["problem"]


async def test_a_refused_file_serves_next_edits_unfiltered(sessions: list, tmp_path: Path) -> None:
    session, uri, _ = edit_session(sessions, tmp_path, 0.05)
    root, home = tmp_path / "repo", tmp_path / "home"
    path = filter_path(root, home)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"format": "codetailor.quiet", "v": 2, "next_edit": [1]}')
    source = FilterFile(home)
    source.start(root)
    session.quiet.source = source
    shown = await session.next_edits.suggest(uri, 2, 10, 2)
    assert shown is not None and shown.text == "twelve"  # the unsure edit, unfiltered
    assert "not an object" in session.status()["quiet"]["problem"]


# -- learning -----------------------------------------------------------------------------------


def synthetic_edit_log(folder: Path, n: int, seed: int = 0, explored: float = 0.0) -> None:
    """Next edits whose acceptance the model's confidence does not tell (the global rule's
    signal) but their size does: a one-line edit is taken 60% of the time, a larger one
    5%; a share `explored` of the ones below the global rule were shown for exploration."""
    rng = random.Random(seed)
    log = EventLog(folder)
    for i in range(n):
        small = rng.random() < 0.5
        p = rng.uniform(0.1, 1.0)
        start = WINDOW.index("3")
        edit = WindowEdit(start, start + 1, "30" if small else "30\nx = 5\ny = 6\nz = 7")
        x = edit_features(WINDOW, 0, edit, sure(p), "python")
        below = GLOBAL_NEXT_EDIT.score(x) < threshold(25)
        if below and rng.random() >= explored:
            continue
        quiet = {
            "show": True,
            "score": GLOBAL_NEXT_EDIT.score(x),
            "filter": "global",
            "explore": below,
            "p_show": explored if below else 1.0,
            "features": dict(zip(EDIT_FEATURES, x, strict=True)),
        }
        log.append(NextEditShown(id=str(i), t=float(i), uri="file:///r/a.py", quiet=quiet))
        if rng.random() < (0.6 if small else 0.05):
            log.append(Accepted(id=str(i), t=i + 0.5))
    log.append(NextEditShown(id="old", t=n + 1.0, uri="file:///r/a.py"))  # no features: left out
    log.close()


def test_learning_next_edits_beats_the_global_rule_where_the_log_has_a_signal(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "log"
    # A fifth of what the rule hides is explored: with less, the edits under the rule's
    # p >= 0.4 are too few for trees to learn that their size, not their p, decides.
    synthetic_edit_log(folder, 800, explored=0.2)
    records = next_edit_records(read_events(folder))
    data = edit_examples(records)
    assert len(data.y) == len(records) - 1 and data.suggestions == "next_edit"
    assert max(data.weight) == pytest.approx(5.0)  # explored ones weigh back 1 / 0.2
    quiet = learn_edits(records)
    assert quiet.suggestions == "next_edit" and quiet.features == EDIT_FEATURES
    scores = quiet.learned["validation"]
    assert quiet.learned["beats_global"]
    assert scores[quiet.learned["learner"]]["reward"] > scores["global"]["reward"]
    start = WINDOW.index("3")
    small = edit_features(WINDOW, 0, WindowEdit(start, start + 1, "30"), sure(0.2), "python")
    large = edit_features(
        WINDOW, 0, WindowEdit(start, start + 1, "30\nx = 5\ny = 6"), sure(0.99), "python"
    )
    assert quiet.score(small) > threshold(25) > quiet.score(large)
    # `feedback learn` learns both kinds: no completions here, one clear line for them.
    report = learn_for_repo(tmp_path, folder)
    assert "needs at least" in report["error"] and not report["stored"]
    assert report["next_edit"]["stored"] and report["next_edit"]["learner"]
    stored = QuietFilters.from_json((folder / "quiet.json").read_text())
    assert stored.completion is None and stored.next_edit is not None
    assert stored.next_edit.score(small) == pytest.approx(quiet.score(small))


def test_too_few_accepted_edits_is_one_clear_line(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    synthetic_edit_log(folder, 30)
    with pytest.raises(CodetailorError, match="next edits shown with their features") as info:
        learn_edits(next_edit_records(read_events(folder)))
    assert "\n" not in str(info.value)
    with pytest.raises(CodetailorError, match="next edits shown") as info:
        learn_for_repo(tmp_path, folder)  # neither kind can be learned: both reasons, one line
    assert "shown suggestions" in str(info.value) and "\n" not in str(info.value)


def test_a_kind_not_learned_keeps_the_filter_the_file_held_for_it(tmp_path: Path) -> None:
    folder = tmp_path / "log"
    synthetic_edit_log(folder, 800)
    write_filter(folder / "quiet.json", hide_all("completion"))
    learn_for_repo(tmp_path, folder)
    stored = QuietFilters.from_json((folder / "quiet.json").read_text())
    assert stored.completion == hide_all("completion") and stored.next_edit is not None


# -- the simulated user's arms and log, on a fake engine ----------------------------------------


class FakeEngine:
    """Answers each place as scripted: (updated window, confidence, withheld by the gate)."""

    def __init__(self, script: dict[str, tuple[str, EditConfidence | None]]) -> None:
        self.script = script

    def predict(
        self,
        request: NextEditRequest,
        *,
        cancel: threading.Event | None = None,
        time_budget: float | None = None,
    ) -> NextEditAnswer:
        updated, confidence = self.script[request.path]
        edit = minimal_edit(request.window.current, updated)
        if edit is not None and confidence is not None and not DEFAULT_GATE.shows(confidence):
            return NextEditAnswer(updated, None, "unsure", confidence=confidence, withheld=edit)
        return NextEditAnswer(updated, edit, "stop" if edit else "no_edit", confidence=confidence)


def fake_places(n: int) -> tuple[list[NextEditExample], FakeEngine]:
    """n places in files of their own: a third answered right and sure, a third wrong and
    unsure (the predictor's gate holds those back), a third with no edit."""
    examples: list[NextEditExample] = []
    script: dict[str, tuple[str, EditConfidence | None]] = {}
    for i in range(n):
        path = f"f{i}.py"
        window = EditWindow(0, WINDOW, WINDOW, 0)
        expected = WINDOW.replace("3", "33")
        request = NextEditRequest(path, (), window)
        examples.append(NextEditExample(f"c{i}", request, expected, "below"))
        if i % 3 == 0:
            script[path] = (expected, sure(0.9))
        elif i % 3 == 1:
            script[path] = (WINDOW.replace("4", "44"), sure(0.05))
        else:
            script[path] = (WINDOW, None)
    return examples, FakeEngine(script)


def test_the_offline_arms_on_the_same_answers_are_paired() -> None:
    from lsp_server.measure.next_edit_user import answer_all, edit_report

    examples, engine = fake_places(30)
    scored = answer_all(examples, engine)
    report = edit_report(scored, QuietArms(hide_all(), 25, GLOBAL_NEXT_EDIT))
    unfiltered, global_, filtered = report["unfiltered"], report["global"], report["filtered"]
    # Unfiltered shows every edit the rewrite made, the ones the gate held back too.
    assert (unfiltered["shown"], unfiltered["accepted_edits"]) == (20, 10)
    assert unfiltered["shown_precision"] == 0.5
    assert (global_["shown"], global_["accepted_edits"], global_["shown_precision"]) == (10, 10, 1)
    assert (filtered["shown"], filtered["accepted_edits"]) == (0, 0)
    paired = report["paired"]["global_vs_unfiltered"]
    assert paired["acceptance_rate_ratio"] == 2.0 and paired["accepted_ratio"] == 1.0
    assert (paired["hid_rejected"], paired["hid_accepted"]) == (10, 0)
    assert paired["reward_difference"] == 10 * 0.25
    low, high = paired["acceptance_rate_ratio_95"]
    assert low <= 2.0 <= high
    assert report["paired"]["filtered_vs_unfiltered"]["accepted_ratio"] == 0.0
    assert report["paired"]["filtered_vs_global"]["acceptance_rate_ratio"] is None  # no shown
    assert (report["places"], report["rewrites_with_an_edit"]) == (30, 20)


def test_record_writes_the_log_feedback_learn_reads(tmp_path: Path) -> None:
    from lsp_server.measure.next_edit_user import answer_all, record

    examples, engine = fake_places(60)
    scored = answer_all(examples, engine)
    repo, home = tmp_path / "repo", tmp_path / "home"
    repo.mkdir()
    figures = record(repo, scored, home=home, quietness=25, seed=1)
    assert figures["accepted"] == 20  # every right edit was sure, so shown and taken
    assert figures["shown"] + figures["suppressed"] == 40
    assert figures["shown"] == 20 + figures["explored"]
    records = next_edit_records(read_events(feedback_dir(repo, home)))
    assert len(records) == figures["shown"] and all(r.shown.source == "simulated" for r in records)
    assert sum(r.was_accepted for r in records) == 20
    data = edit_examples(records)
    assert len(data.y) == figures["shown"]  # every one logged its features
