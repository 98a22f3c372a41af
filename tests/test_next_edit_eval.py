"""`codetailor eval --next-edit`: the miner on a real git history, the scores, and the CLI.

The history is built in a temp dir with the noise the miner must drop (a
rename, a formatting-only commit, a revert, a lock file, a bot, a cherry-pick,
a bulk commit, a merged branch); the predictor is a fake, so no model loads.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import threading
from pathlib import Path

import pytest

from lsp_server.cli import main
from lsp_server.completion.next_edit import NextEditAnswer, NextEditRequest, WindowEdit
from lsp_server.completion.next_edit_gate import EditConfidence, ShowGate
from lsp_server.measure.quality import next_edit_cli
from lsp_server.measure.quality.metrics import wilson_interval
from lsp_server.measure.quality.next_edit_eval import Scored, evaluate, summarize, with_gates
from lsp_server.repo.edit_examples import NextEditExample
from lsp_server.repo.history import mine, mine_split

APP = '"""App."""\n\n\ndef total(values, count):\n    return sum(values[:count])\n\n\n' + (
    "def report(values):\n    n = len(values)\n    print(total(values, n))\n"
)
FEATURES = 12


def _git(root: Path, *args: str, author: str = "Ann <ann@example.com>") -> str:
    name, email = author.rstrip(">").split(" <")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env |= {"GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email}
    env |= {"GIT_COMMITTER_NAME": "Ann", "GIT_COMMITTER_EMAIL": "ann@example.com"}
    done = subprocess.run(
        ["git", "-C", str(root), "-c", "init.defaultBranch=main", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    return done.stdout.strip()


def _commit(root: Path, message: str, files: dict[str, str], **kw: str) -> str:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", message, **kw)
    return _git(root, "rev-parse", "HEAD")


def _feature(text: str, i: int) -> str:
    """Two hunks far apart: a new function at the end and its call in report()."""
    call = f"    print(total(values, n))\n    print(f{i}(n))\n"
    text = text.replace("    print(total(values, n))\n", call, 1)
    return text + f"\n\ndef f{i}(x):\n    return x + {i}\n"


@pytest.fixture(scope="module")
def history_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("history")
    _git(root, "init", "-q")
    app = APP
    _commit(root, "start", {"app.py": app})
    for i in range(FEATURES):
        app = _feature(app, i)
        picked = _commit(root, f"feature {i}", {"app.py": app})
        if i == 2:
            _git(root, "revert", "--no-edit", "HEAD")
            _git(root, "cherry-pick", picked)  # the same change again
            app = (root / "app.py").read_text()
        if i == 4:
            _git(root, "mv", "app.py", "core.py")
            _git(root, "commit", "-q", "-m", "move app to core")
            _commit(root, "Tidy", {"core.py": app.replace("    return", "    return  ")})
            _git(root, "mv", "core.py", "app.py")
            _git(root, "commit", "-q", "-m", "move back")
            app = (root / "app.py").read_text()
        if i == 6:
            _commit(root, "lock", {"poetry.lock": "a = 1\n"})
            _commit(root, "bump", {"app.py": app + "# bumped\n"}, author="dependabot[bot] <b@x>")
            app += "# bumped\n"
            _commit(root, "bulk", {f"gen/m{j}.py": f"x = {j}\n" for j in range(30)})
        if i == 8:
            _git(root, "checkout", "-q", "-b", "side")
            _commit(root, "side work", {"side.py": "s = 1\n"})
            _git(root, "checkout", "-q", "main")
            _git(root, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    return root


def test_the_miner_keeps_feature_commits_and_says_why_it_dropped_the_rest(history_repo):
    history = mine(history_repo)
    reasons = list(zip((c.subject for c in history.commits), history.reasons, strict=True))
    why = dict(reasons)
    assert "merge side" not in why and "side work" not in why  # first parent, no merges
    assert why['Revert "feature 2"'] == "revert"
    # Feature 2 was reverted and then cherry-picked back: the second copy is dropped.
    assert [r for s, r in reasons if s == "feature 2"] == [None, "cherry_pick"]
    assert why["move app to core"] == why["move back"] == "rename_only"
    assert why["Tidy"] == "formatting_only"
    assert why["lock"] == "no_source"
    assert why["bump"] == "bot"
    assert why["bulk"] == "bulk"
    assert [c.subject for c in history.kept] == ["start"] + [f"feature {i}" for i in range(12)]
    assert history.dropped() == {
        "revert": 1,
        "cherry_pick": 1,
        "rename_only": 2,
        "formatting_only": 1,
        "no_source": 1,
        "bot": 1,
        "bulk": 1,
    }


def test_the_split_holds_out_the_newest_kept_commits_and_their_examples(history_repo):
    history, earlier, held = mine_split(history_repo, 0.25)
    assert [c.subject for c in held] == [f"feature {i}" for i in range(8, 12)]
    assert earlier == history.kept[:-4]
    examples = history.examples(held, held_out=True, order="file")
    assert {e.commit for e in examples} <= {c.sha for c in held}
    due = [e for e in examples if e.edit_due]
    assert len(due) == 4 and {e.category for e in due} == {"at"}  # the call is far from the def
    for example in due:
        assert example.expected != example.request.window.current
        assert example.request.history  # the other hunk of the commit came first
    assert any(not e.edit_due for e in examples)


def test_wilson_intervals_match_the_textbook_values():
    low, high = wilson_interval(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and round(high, 4) == 0.2775
    assert wilson_interval(0, 0) is None


def _answer(example: NextEditExample, written: str | None) -> NextEditAnswer:
    if written is None or written == example.request.window.current:
        return NextEditAnswer(updated=written, edit=None, stop_reason="no_edit", forwards=2)
    return NextEditAnswer(
        updated=written,
        edit=WindowEdit(0, 1, "x"),
        stop_reason="eos",
        generated_tokens=9,
        forwards=3,
    )


def test_the_summary_counts_exact_no_edit_and_shown_precision(history_repo):
    history, _, held = mine_split(history_repo, 0.25)
    examples = history.examples(held, held_out=True)
    due = [e for e in examples if e.edit_due]
    quiet = [e for e in examples if not e.edit_due]
    scored = [
        Scored(due[0], _answer(due[0], due[0].expected), 10.0),  # right, shown
        Scored(due[1], _answer(due[1], "wrong\n"), 20.0),  # wrong, shown
        Scored(due[2], _answer(due[2], None), 30.0),  # no edit where one was due
        Scored(quiet[0], _answer(quiet[0], quiet[0].request.window.current), 40.0),  # right
    ]
    summary = summarize(scored)
    assert summary["examples"] == 4 and summary["edit_due"] == 3
    assert summary["exact_match"] == round(1 / 3, 4)
    assert summary["exact_match_ci95"] == [round(x, 4) for x in wilson_interval(1, 3)]
    assert summary["by_category"]["at"]["examples"] == 3
    assert summary["by_category"]["above"]["exact_match"] is None
    assert summary["no_edit_accuracy"] == 1.0
    assert summary["shown"] == 2 and summary["shown_precision"] == 0.5
    assert summary["p50_ms"] == 25.0 and summary["p95_ms"] == 38.5
    assert summary["tokens_per_forward"] == round(18 / 10, 3)


def _gated(example: NextEditExample, written: str, p: float, gate: ShowGate) -> Scored:
    """An answer writing `written`, the model as sure as `p` of its edit, through `gate`."""
    confidence = EditConfidence(math.log(p), math.log(p), 1.0, 5, 0.0, "stop")
    edit = WindowEdit(0, 1, "x")
    shown = gate.shows(confidence)
    answer = NextEditAnswer(
        updated=written,
        edit=edit if shown else None,
        stop_reason="stop" if shown else "unsure",
        confidence=confidence,
        withheld=None if shown else edit,
    )
    return Scored(example, answer, 10.0)


def test_the_gate_is_reported_as_served_ungated_and_swept_over_the_same_answers(
    history_repo,
):
    history, _, held = mine_split(history_repo, 0.25)
    examples = history.examples(held, held_out=True)
    due = [e for e in examples if e.edit_due]
    quiet = [e for e in examples if not e.edit_due]
    gate = ShowGate(min_logprob=math.log(0.5))
    scored = [
        _gated(due[0], due[0].expected, 0.9, gate),  # right and sure: shown
        _gated(due[1], "wrong\n", 0.2, gate),  # wrong and unsure: held back
        _gated(quiet[0], "noise\n", 0.1, gate),  # noise where nothing was due: held back
    ]
    summary = with_gates(scored, gate)
    assert summary["gate"] == {"min_token_probability": 0.5, "max_deleted_share": 1.0}
    assert summary["shown"] == 1 and summary["shown_precision"] == 1.0
    assert summary["no_edit_accuracy"] == 1.0 and summary["exact_match"] == 0.5
    assert summary["stop_reasons"] == {"stop": 1, "unsure": 2}
    ungated = summary["ungated"]
    assert ungated["shown"] == 3 and ungated["shown_precision"] == round(1 / 3, 4)
    assert ungated["no_edit_accuracy"] == 0.0 and ungated["exact_match"] == 0.5
    sweep = {(g["min_token_probability"], g["max_deleted_share"]): g for g in summary["gate_sweep"]}
    assert sweep[None, 1.0]["shown"] == 3  # no bound: every edit
    assert sweep[0.1, 1.0]["shown"] == 3 and sweep[0.2, 1.0]["shown"] == 2
    assert sweep[0.9, 1.0]["shown"] == 1 and sweep[0.9, 1.0]["shown_precision"] == 1.0


class _Fake:
    """Answers from a table of expected windows (an oracle), or "no edit" for everything."""

    window_lines = 11  # a CPU's window: the examples are mined with it

    def __init__(self, oracle: dict[str, str] | None) -> None:
        self.oracle = oracle or {}

    def predict(
        self,
        request: NextEditRequest,
        *,
        cancel: threading.Event | None = None,
        time_budget: float | None = None,
    ) -> NextEditAnswer:
        written = self.oracle.get(request.window.current, request.window.current)
        if written == request.window.current:
            return NextEditAnswer(updated=written, edit=None, stop_reason="no_edit", forwards=1)
        return NextEditAnswer(
            updated=written, edit=WindowEdit(0, 0, "x"), stop_reason="eos", forwards=1
        )


@pytest.fixture
def fake_predictor(monkeypatch: pytest.MonkeyPatch, history_repo: Path) -> list[str | None]:
    history, _, held = mine_split(history_repo, 0.25)
    examples = history.examples(held, held_out=True, window_lines=_Fake.window_lines)
    oracle = {e.request.window.current: e.expected for e in examples}
    loaded: list[str | None] = []

    def load(args, adapter, *factory):
        loaded.append(adapter)
        return _Fake(oracle if adapter else None), {"model": "fake", "adapter": adapter}

    monkeypatch.setattr(next_edit_cli, "load_predictor", load)
    return loaded


def test_eval_next_edit_prints_the_figures_as_json(history_repo, fake_predictor, capsys):
    args = ["eval", str(history_repo), "--next-edit", "--holdout", "0.25", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("examples", "exact_match", "exact_match_ci95", "no_edit_accuracy"):
        assert key in out
    assert out["exact_match"] == 0.0 and out["no_edit_accuracy"] == 1.0  # "no edit" always
    assert out["shown_precision"] is None and out["p95_ms"] >= out["p50_ms"] >= 0
    assert out["commits"]["held_out"] == 4 and out["commits"]["dropped"]["bot"] == 1
    assert out["window_lines"] == 11 and out["split"] == "held-out"
    assert out["ungated"]["no_edit_accuracy"] == 1.0 and out["gate_sweep"]


def test_eval_next_edit_split_train_scores_the_earlier_commits(
    history_repo, fake_predictor, capsys
):
    args = ["eval", str(history_repo), "--next-edit", "--holdout", "0.25", "--json"]
    assert main([*args, "--split", "train", "--details"]) == 0
    out = json.loads(capsys.readouterr().out)
    _, earlier, held = mine_split(history_repo, 0.25)
    assert out["split"] == "train" and out["examples"] > 0
    commits = {d["commit"] for d in out["details"]}
    assert commits <= {c.sha for c in earlier} and not commits & {c.sha for c in held}
    assert main(["eval", str(history_repo), "--split", "train", "--json"]) != 0  # not next edits


def test_eval_next_edit_compare_scores_base_and_adapter_on_the_same_examples(
    history_repo, fake_predictor, capsys
):
    args = ["eval", str(history_repo), "--next-edit", "--holdout", "0.25", "--samples", "3"]
    assert main([*args, "--adapter", "ad", "--compare", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"base", "adapter"} and fake_predictor == [None, "ad"]
    assert out["base"]["examples"] == out["adapter"]["examples"] == 3
    assert out["adapter"]["shown_precision"] in (1.0, None)
    assert out["adapter"]["exact_match"] in (1.0, None)  # the oracle knows the 11-line windows
    assert main([*args, "--adapter", "ad", "--compare"]) == 0
    table = capsys.readouterr().out
    assert "exact match" in table and "base" in table and "adapter" in table


def test_eval_next_edit_refuses_a_folder_without_git_or_enough_history(tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--next-edit"]) == 2
    assert "not a git repository" in capsys.readouterr().err
    _git(tmp_path, "init", "-q")
    _commit(tmp_path, "one", {"a.py": "x = 1\n"})
    assert main(["eval", str(tmp_path), "--next-edit"]) == 2
    err = capsys.readouterr().err
    assert "at least" in err and err.count("\n") == 1


def test_ctrl_c_ends_an_evaluation_with_what_was_scored(history_repo):
    history, _, held = mine_split(history_repo, 0.25)
    examples = history.examples(held, held_out=True)

    class Stops(_Fake):
        calls = 0

        def predict(self, request, *, cancel=None, time_budget=None):
            self.calls += 1
            if self.calls == 3:
                raise KeyboardInterrupt
            return super().predict(request)

    assert len(evaluate(examples, Stops(None))) == 2
    with pytest.raises(KeyboardInterrupt):
        evaluate(examples, type("First", (Stops,), {"calls": 2})(None))
