"""Preference tuning on the feedback log, on a tiny model: data, losses, the gate."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from finetune.config import FinetuneConfig, PreferenceConfig
from finetune.data.examples import Blocks
from finetune.data.preferences import PreferenceData, preference_data, split_by_place
from finetune.preference.anchor import Anchor
from finetune.preference.gate import gate
from finetune.preference.loop import train
from finetune.preference.records import prompt_builder
from finetune.preference.run import run_preference, trainable_adapter
from finetune.preference.scoring import Scorer, preference_accuracy
from finetune.train import run
from lsp_server.cli import main
from lsp_server.completion.prompt import Snippet, get_format
from lsp_server.errors import CodetailorError
from lsp_server.feedback import FeedbackRecorder, Suggestion, read_events, suggestion_records

pytestmark = pytest.mark.usefixtures("one_thread")

GOOD, BAD = "return a + b", "raise ValueError"


@pytest.fixture(scope="module")
def adapter(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("adapters") / "lora"
    values = {
        "repo": str(fixture_repo),
        "out": str(out),
        "model": str(tiny_model_dir),
        "seq_len": 64,
        "batch_size": 2,
        "lr": 1e-2,
        "max_steps": 4,
        "eval_every": 0,
        "eval_blocks": 4,
        "patience": 0,
        "match_samples": 4,
        "match_max_tokens": 4,
    }
    run(FinetuneConfig.from_dict(values), progress=False)
    return out


def plant(folder: Path, places: int = 24) -> None:
    """At each place the user kept GOOD and rejected BAD (a pair); a few unpaired too."""
    rec = FeedbackRecorder(folder, clock=lambda: 1_700_000_000.0)
    for i in range(places):
        prefix = f"def add_{i}(a, b):\n    "
        for n, (text, keep) in enumerate(((GOOD, True), (BAD, False))):
            id = f"{i}-{n}"
            rec.shown(
                Suggestion(
                    id=id,
                    uri=f"file:///r/m{i}.py",
                    path=f"pkg/m{i}.py",
                    language="python",
                    model="tiny",
                    prompt_format="prefix-only",
                    prefix=prefix,
                    suffix="\n",
                    text=text,
                    latency_ms=10.0,
                    source="simulated",
                )
            )
            rec.accepted(id) if keep else rec.superseded(id)
    rec.close()


def test_prompts_are_rebuilt_exactly_as_the_server_built_them(tmp_path: Path) -> None:
    from lsp_server.completion.window import PromptWindow
    from tests.tiny import build_tokenizer

    tokenizer = build_tokenizer(tmp_path / "tok")
    fmt = get_format("prefix-only")
    server = PromptWindow(tokenizer, fmt, window_tokens=128)
    prefix = "".join(f"x_{i} = f({i})\n" for i in range(3000)) + "    y = "
    snippets = [Snippet("lib/util.py", "def f(x):\n    return x\n")]
    shown = server.prompt_for(prefix, "\nz = 1\n", path="pkg/a.py", context=snippets)
    rec = FeedbackRecorder(tmp_path / "log")
    rec.shown(
        Suggestion(
            id="1",
            uri="file:///a.py",
            path="pkg/a.py",
            language="python",
            model="m",
            prompt_format="prefix-only",
            prefix=prefix,
            suffix="\nz = 1\n",
            context=[("lib/util.py", snippets[0].text)],
            text="g(1)",
            latency_ms=5.0,
            window_tokens=128,
        )
    )
    records = suggestion_records(read_events(tmp_path / "log"))
    data = preference_data(records, prompt_builder(tokenizer, fmt, 1024))
    (example,) = data.unpaired
    assert len(records[0].shown.prefix) < len(prefix)  # the log keeps the window's part
    assert example.prompt == shown
    assert example.completion == " g(1)"  # the held-back space leads, as the model wrote it


def test_the_snippets_a_completion_reports_rebuild_its_prompt(tmp_path: Path) -> None:
    """The session logs `completion.context[::-1]` (the Completer reports them nearest last)."""
    from lsp_server.completion.window import PromptWindow
    from tests.tiny import build_tokenizer

    tokenizer = build_tokenizer(tmp_path / "tok")
    fmt = get_format("prefix-only")
    server = PromptWindow(tokenizer, fmt, window_tokens=1024)
    candidates = [Snippet(f"lib/m{i}.py", f"def f{i}(x):\n    return x * {i}\n") for i in range(6)]
    prefix = "import lib\n\ny = "
    prompt, used, _ = server.layout(prefix, "", "pkg/a.py", candidates)
    assert len(used) >= 2
    rec = FeedbackRecorder(tmp_path / "log")
    rec.shown(
        Suggestion(
            id="1",
            uri="file:///a.py",
            path="pkg/a.py",
            language="python",
            model="m",
            prompt_format="prefix-only",
            prefix=prefix,
            context=[(s.path, s.text) for s in used[::-1]],
            text="f1(2)",
            latency_ms=5.0,
            window_tokens=1024,
        )
    )
    records = suggestion_records(read_events(tmp_path / "log"))
    (example,) = preference_data(records, prompt_builder(tokenizer, fmt, 1024)).unpaired
    assert example.prompt == prompt


def test_the_log_becomes_pairs_and_unpaired_labels(tmp_path: Path) -> None:
    plant(tmp_path, places=6)
    rec = FeedbackRecorder(tmp_path, clock=lambda: 1_700_000_100.0)
    rec.shown(
        Suggestion(
            id="solo",
            uri="file:///r/x.py",
            path="x.py",
            language="python",
            model="m",
            prompt_format="prefix-only",
            prefix="y = ",
            text="compute()",
            latency_ms=5.0,
        )
    )
    rec.dismissed("solo")
    records = suggestion_records(read_events(tmp_path))
    data = preference_data(records, lambda p, s, *rest: p)
    assert data.counts() == {"pairs": 6, "unpaired": 1, "desirable": 6, "undesirable": 7}
    held = "\n    "  # the whitespace the prompt leaves out leads what the model wrote
    assert all(c.completion == held + GOOD and r.completion == held + BAD for c, r in data.pairs)
    train_part, held_part = split_by_place(records, 0.5)
    places = lambda rs: {r.shown.path for r in rs}  # noqa: E731
    assert not places(train_part) & places(held_part)


def test_what_the_user_typed_instead_is_preferred_to_the_suggestion(tmp_path: Path) -> None:
    rec = FeedbackRecorder(tmp_path, clock=lambda: 1_700_000_000.0)
    cases = {  # id: (suggestion, what the user did, what they typed at the place)
        "ignored": ("raise ValueError", "superseded", "return a + b"),
        "partial": ("return a - b", "word", "return a + b"),
        "taken": (GOOD, "full", GOOD),
        "typed-through": (GOOD, "superseded", GOOD + "  # sum"),
    }
    for n, (id, (suggestion, outcome, typed)) in enumerate(cases.items()):
        prefix, suffix = f"def add_{n}(a, b):\n    ", "\n"
        uri = f"file:///r/m{n}.py"
        rec.shown(
            Suggestion(
                id=id,
                uri=uri,
                path=f"m{n}.py",
                language="python",
                model="m",
                prompt_format="prefix-only",
                prefix=prefix,
                suffix=suffix,
                text=suggestion,
                latency_ms=5.0,
            )
        )
        if outcome == "superseded":
            rec.superseded(id)
        else:
            rec.accepted(id, outcome)  # type: ignore[arg-type]
        rec.document_changed(uri, prefix + typed + "\n" + suffix)
    data = preference_data(suggestion_records(read_events(tmp_path)), lambda p, s, *rest: p)
    held = "\n    "
    pairs = {r.id: (c.completion, r.completion) for c, r in data.pairs}
    assert pairs == {
        "ignored": (held + "return a + b", held + "raise ValueError"),
        "partial": (held + "return a + b", held + "return a - b"),
    }
    assert all(c.desirable and not r.desirable for c, r in data.pairs)
    assert {e.id: e.desirable for e in data.unpaired} == {"taken": True, "typed-through": True}


def test_an_sft_term_pulls_towards_what_the_user_wrote(
    adapter: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from lsp_server.model.loading import load_model

    plant(tmp_path, places=4)
    loaded = load_model(str(tiny_model_dir))
    build = prompt_builder(loaded.tokenizer, get_format("prefix-only"), 256)
    data = preference_data(suggestion_records(read_events(tmp_path)), build)
    model = trainable_adapter(loaded.model, adapter, 0)
    scorer = Scorer(model, loaded.tokenizer, 128, "cpu")
    chosen = data.pairs[0][0]
    before = float(scorer.policy(chosen).detach())
    train(model, scorer, data, PreferenceConfig(lr=5e-3, max_steps=6, sft_weight=1.0))
    assert float(scorer.policy(chosen).detach()) > before


@pytest.mark.parametrize("reference", ["base", "start"])
def test_the_loss_decreases_on_a_planted_preference(
    reference: str, adapter: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from lsp_server.model.loading import load_model

    plant(tmp_path)
    loaded = load_model(str(tiny_model_dir))
    build = prompt_builder(loaded.tokenizer, get_format("prefix-only"), 256)
    data = preference_data(suggestion_records(read_events(tmp_path)), build)
    model = trainable_adapter(loaded.model, adapter, 0)
    scorer = Scorer(model, loaded.tokenizer, 128, "cpu", reference)
    before = preference_accuracy(scorer, data)
    if reference == "start":  # the policy is its own reference: every reward is 0, all ties
        assert before == 0.5 and set(scorer.rewards(data.examples)) == {0.0}
    cfg = PreferenceConfig(lr=5e-3, beta=0.5, max_steps=24, batch_size=4)
    losses = train(model, scorer, data, cfg)
    assert sum(losses[-4:]) / 4 < losses[0] - 0.02
    after = preference_accuracy(scorer, data)
    assert before is not None and after is not None and after > max(before, 0.9)
    with pytest.raises(CodetailorError, match="reference must be one of base, start"):
        Scorer(model, loaded.tokenizer, 128, "cpu", "sft")


def anchored_runs(
    adapter: Path, tiny_model_dir: Path, fixture_repo: Path, log: Path
) -> Iterator[tuple[Any, Scorer, PreferenceData, Blocks]]:
    """The same preference steps twice, without and then with an anchor: each time a fresh
    trainable adapter, its scorer, the planted log's data and the repository's training
    blocks (32 tokens each)."""
    from finetune.repo_eval import RepoEval
    from lsp_server.model.adapter_meta import read_meta
    from lsp_server.model.loading import load_model

    plant(log, places=8)
    fmt = get_format("prefix-only")
    meta = read_meta(adapter)
    assert meta is not None
    repo_eval = RepoEval.for_adapter(fixture_repo, meta, adapter, {}, 0)
    for _ in range(2):
        loaded = load_model(str(tiny_model_dir))
        blocks = repo_eval.training_blocks(loaded.tokenizer, fmt, 32)
        assert blocks.ids and max(blocks.lengths) <= 32
        data = preference_data(
            suggestion_records(read_events(log)), prompt_builder(loaded.tokenizer, fmt, 256)
        )
        model = trainable_adapter(loaded.model, adapter, 0)
        yield model, Scorer(model, loaded.tokenizer, 128, "cpu"), data, blocks


def test_the_anchor_keeps_the_adapter_a_model_of_the_code(
    adapter: Path, tiny_model_dir: Path, fixture_repo: Path, tmp_path: Path
) -> None:
    from finetune.evaluate import heldout_loss

    code_loss = {}
    runs = anchored_runs(adapter, tiny_model_dir, fixture_repo, tmp_path)
    for weight, (model, scorer, data, blocks) in zip((0.0, 1.0), runs, strict=True):
        cfg = PreferenceConfig(lr=2e-2, max_steps=8, anchor_weight=weight, anchor_rows=4)
        train(model, scorer, data, cfg, Anchor(blocks, cfg.anchor_rows, 0))
        code_loss[weight] = heldout_loss(model, blocks, 8, "cpu")
    assert code_loss[1.0] < code_loss[0.0]
    with pytest.raises(CodetailorError, match="nothing to train"):
        train(model, scorer, data, PreferenceConfig(preference_weight=0.0), None)


def test_a_kl_anchor_holds_the_adapters_predictions_where_they_started(
    adapter: Path, tiny_model_dir: Path, fixture_repo: Path, tmp_path: Path
) -> None:
    drift = {}
    runs = anchored_runs(adapter, tiny_model_dir, fixture_repo, tmp_path)
    for weight, (model, scorer, data, blocks) in zip((0.0, 1.0), runs, strict=True):
        probe = Anchor(blocks, len(blocks.ids), 0, kind="kl")
        probe.hold(model)
        assert float(probe.loss(model.eval(), "cpu")) == pytest.approx(0.0, abs=1e-6)
        cfg = PreferenceConfig(lr=2e-2, max_steps=8, anchor_weight=weight, anchor_rows=4)
        train(model, scorer, data, cfg, Anchor(blocks, cfg.anchor_rows, 0, kind="kl"))
        drift[weight] = float(probe.loss(model.eval(), "cpu"))  # KL from where it started
    assert 0 < drift[1.0] < drift[0.0]
    with pytest.raises(CodetailorError, match="anchor_kind must be one of tokens, kl"):
        Anchor(blocks, 2, 0, kind="weights")


def test_the_gate_says_why_it_refuses() -> None:
    base = {"heldout_loss": 2.0, "next_line_exact_match": 0.5, "preference_accuracy": 0.5}
    assert gate(base, base | {"preference_accuracy": 0.7}) == (True, [])
    ok, reasons = gate(base, {"heldout_loss": 2.5, "next_line_exact_match": 0.25,
                              "preference_accuracy": 0.5})  # fmt: skip
    assert not ok and len(reasons) == 3
    assert "held-out loss rose from 2.0000 to 2.5000" in reasons[0]
    assert gate(base, base | {"heldout_loss": 2.01, "preference_accuracy": 0.6}, 0.01)[0]


def test_a_worse_adapter_is_refused_and_the_old_one_kept(
    adapter: Path, fixture_repo: Path, tmp_path: Path
) -> None:
    log = tmp_path / "log"
    plant(log)
    before = {p.name: p.read_bytes() for p in adapter.iterdir()}
    # A learning rate this large wrecks the LoRA weights: the held-out loss must rise (the
    # anchor, at this rate, would instead fit the tiny model to the repository's code).
    cfg = PreferenceConfig(
        repo=str(fixture_repo),
        adapter=str(adapter),
        log_dir=str(log),
        anchor_weight=0.0,
        lr=3.0,
        max_steps=6,
        heldout_feedback=0.3,
        candidate=str(tmp_path / "candidate"),  # written anyway, to be measured
    )
    summary = run_preference(cfg, progress=False)
    assert summary["kept"] is False
    assert any("held-out loss rose" in r for r in summary["reasons"])
    assert summary["after"]["heldout_loss"] > summary["before"]["heldout_loss"]
    assert {p.name: p.read_bytes() for p in adapter.iterdir()} == before
    written = tmp_path / "candidate" / "adapter_model.safetensors"
    assert written.read_bytes() != before["adapter_model.safetensors"]


def test_a_better_adapter_replaces_the_old_one_through_the_command(
    adapter: Path, fixture_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune.preference import command, records
    from finetune.preference import run as preference_run

    tuned = tmp_path / "tuned"
    tuned.mkdir()
    for p in adapter.iterdir():
        (tuned / p.name).write_bytes(p.read_bytes())
    plant(records.feedback_log(fixture_repo))
    original: Any = preference_run.gate
    from_args = command.config_from_args
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(command, "config_from_args", lambda a: from_args(a) | {"lr": 5e-3})
        # The tiny model's repository figures are noise: gate on ranking alone here.
        mp.setattr(preference_run, "gate", lambda b, a, tol=0.0: original(
            {"preference_accuracy": b["preference_accuracy"]},
            {"preference_accuracy": a["preference_accuracy"]},
        ))  # fmt: skip
        code = main(["finetune", str(fixture_repo), "--out", str(tuned), "--feedback",
                     "--max-steps", "12", "--json", "--no-progress"])  # fmt: skip
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["kept"] is True, summary["reasons"]
    meta = json.loads((tuned / "codetailor.json").read_text())
    assert meta["preference_tuning"][0]["train"]["pairs"] > 0
    assert (tuned / "adapter_model.safetensors").read_bytes() != (
        adapter / "adapter_model.safetensors"
    ).read_bytes()


def test_too_little_feedback_is_one_clear_error(
    adapter: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = tmp_path / "empty-repo"
    repo.mkdir()
    assert main(["finetune", str(repo), "--out", str(adapter), "--feedback"]) == 2
    assert "needs at least" in capsys.readouterr().err


def test_the_sweep_compares_settings_on_the_logs_validation_part(
    adapter: Path, fixture_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from finetune.preference_sweep import main as sweep

    plant(tmp_path / "log", places=12)
    args = [str(fixture_repo), "--adapter", str(adapter), "--log-dir", str(tmp_path / "log")]
    assert sweep([*args, "--set", "max_steps=1", "--set", "sft_weight=0,1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["config"] for r in rows] == [
        {"max_steps": 1, "sft_weight": 0},
        {"max_steps": 1, "sft_weight": 1},
    ]
    assert "before" in rows[0] and all(r["steps"] == 1 for r in rows)
    assert all(r["fit"]["pairs"] > 0 and "preference_accuracy" in r["after"] for r in rows)
    # Each reference scores the adapter as it is against its own reference log-probs: against
    # itself (start), every reward is 0, so the ranking is all ties.
    plant(tmp_path / "more", places=40)  # enough that the validation part holds pairs
    args[-1] = str(tmp_path / "more")
    refs = ["--set", 'reference="base","start"']
    assert sweep([*args, "--set", "max_steps=1", *refs]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["config"]["reference"] for r in rows] == ["base", "start"]
    assert rows[1]["before"]["preference_accuracy"] == 0.5
    assert rows[0]["before"]["preference_accuracy"] != 0.5


def test_feedback_settings_go_through_the_training_configs_parser(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import argparse
    import re
    from dataclasses import fields

    from finetune.cli import add_arguments
    from finetune.config import parse_setting
    from finetune.preference.command import config_from_args

    def config(*argv: str) -> PreferenceConfig:
        parser = argparse.ArgumentParser()
        add_arguments(parser)
        return config_from_args(parser.parse_args(["repo", "--out", "lora", "--feedback", *argv]))

    cfg = config("--set", "sft_weight=0", "--set", "reference=start", "--set", "max_steps=none",
                 "--set", 'repo_eval={"holdout": 0.3}', "--set", "source=editor",
                 "--holdout", "0.3", "--seq-len", "64", "--seed", "2")  # fmt: skip
    assert (cfg.repo, cfg.adapter, cfg.sft_weight, cfg.reference) == ("repo", "lora", 0.0, "start")
    assert cfg.max_steps is None and cfg.repo_eval == {"holdout": 0.3} and cfg.source == "editor"
    assert (cfg.heldout_feedback, cfg.max_prompt_tokens, cfg.seed) == (0.3, 64, 2)
    assert parse_setting('reference="base"', PreferenceConfig) == ("reference", "base")
    for argv, message in [
        (["--set", "lora_r=8"], "--set lora_r: unknown config key; valid keys: repo, adapter"),
        (["--set", "beta=strong"], "config key beta must be float, got 'strong'"),
        (["--set", "seed=1", "--seed", "2"], "--set seed repeats a value given on the command"),
        (["--set", "anchor_kind=weights"], "anchor_kind must be one of tokens, kl"),
        (["--set", "preference_weight=0", "--set", "anchor_weight=0"], "nothing to train"),
    ]:
        with pytest.raises(CodetailorError, match=re.escape(message)):
            config(*argv)
    assert all(f.metadata.get("help") for f in fields(PreferenceConfig))
    from finetune.cli import main as finetune_main

    with pytest.raises(SystemExit):
        finetune_main(["--help"])
    help_text = capsys.readouterr().out.split("with --feedback")[1]
    for f in fields(PreferenceConfig):
        assert re.search(rf"^  {f.name} \(", help_text, re.M), f"--help lacks {f.name}"
