"""Starting from an adapter (`init_adapter`) and updating one with what is new (incremental
runs), on the tiny models: the weights it starts from, the refusals, the new commits and
files with the replay share, and nothing written when nothing is new."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from finetune import train as train_module
from finetune.cli import main
from finetune.config import FinetuneConfig
from finetune.console import data_line
from finetune.incremental import NothingNew, find_since
from finetune.train import run, split_repository
from lsp_server.errors import CodetailorError
from lsp_server.repo.history import mine_split
from tests.fixtures.history import commit, feature, git, make_history_repo
from tests.tiny import SMOLLM2_TOKENS, build_model

pytestmark = pytest.mark.usefixtures("one_thread")

TRAIN = {
    "seq_len": 64,
    "next_edit_seq_len": 512,
    "batch_size": 2,
    "max_steps": 2,
    "eval_every": 0,
    "eval_blocks": 2,
    "patience": 0,
    "match_samples": 0,
    "checkpoint_every": 10,
    "time_budget_minutes": 0,
}


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama whose tokenizer holds SmolLM2's added tokens."""
    return build_model(tmp_path_factory.mktemp("tiny-smol"), special=SMOLLM2_TOKENS, seed=2)


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_history_repo(tmp_path_factory.mktemp("history"))


@pytest.fixture
def repo(origin: Path, tmp_path: Path) -> Path:
    """A clone of the history repository that the test may add commits to."""
    git(tmp_path, "clone", "-q", str(origin), "repo")
    return tmp_path / "repo"


def config(repo: Path, out: Path, model: Path, **changes: Any) -> FinetuneConfig:
    values = TRAIN | {"repo": str(repo), "out": str(out), "model": str(model)} | changes
    return FinetuneConfig.from_dict(values)


def finetuned(repo: Path, out: Path, model: Path, **changes: Any) -> dict[str, Any]:
    summary = run(config(repo, out, model, **changes), progress=False)
    assert summary is not None
    return summary


def meta_of(out: Path) -> dict[str, Any]:
    return json.loads((out / "codetailor.json").read_text())


# --- init_adapter -------------------------------------------------------------------------


def test_a_run_from_an_adapter_starts_with_its_weights(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path: Path
) -> None:
    first = finetuned(fixture_repo, tmp_path / "a", tiny_model_dir, max_steps=4, lr=1e-2)
    assert first["heldout_loss_after"] < first["heldout_loss_before"]
    second = finetuned(
        fixture_repo, tmp_path / "b", tiny_model_dir, init_adapter=str(tmp_path / "a")
    )
    # The held-out loss before any step is the adapter's own, not the base model's.
    assert second["heldout_loss_before"] == pytest.approx(first["heldout_loss_after"], rel=1e-5)
    assert second["started_from"] == str(tmp_path / "a")
    started = meta_of(tmp_path / "b")["training"]["started_from"]
    assert started["path"] == str((tmp_path / "a").resolve())
    assert started["heldout_loss"] == first["heldout_loss_after"]
    assert meta_of(tmp_path / "a")["training"]["started_from"] is None


def test_an_adapter_that_would_mean_something_else_is_refused_in_one_line(
    fixture_repo: Path, tiny_model_dir: Path, tiny_fim_model_dir: Path, tmp_path: Path
) -> None:
    start = tmp_path / "start"
    finetuned(fixture_repo, start, tiny_model_dir, max_steps=1)
    out = tmp_path / "out"

    def refused(**changes: Any) -> str:
        with pytest.raises(CodetailorError) as caught:
            finetuned(fixture_repo, out, changes.pop("model", tiny_model_dir), **changes)
        assert "\n" not in str(caught.value)
        return str(caught.value)

    assert "LoRA rank 16, this run's is 8" in refused(init_adapter=str(start), lora_r=8)
    assert "trained on another base model" in refused(
        init_adapter=str(start), model=tiny_fim_model_dir
    )
    meta = meta_of(start)
    (start / "codetailor.json").write_text(json.dumps(meta | {"prompt_format": "starcoder"}))
    assert "learned prompt format starcoder" in refused(init_adapter=str(start))
    (start / "codetailor.json").unlink()
    assert "no codetailor.json" in refused(init_adapter=str(start))
    assert "not an adapter folder" in refused(init_adapter=str(tmp_path))
    assert not out.exists()


def test_a_run_starts_from_the_shipped_general_adapter_in_its_format(
    fixture_repo: Path, smol_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lsp_server.model import shipped

    general = tmp_path / "general"
    finetuned(fixture_repo, general, smol_dir, max_steps=1, prompt_format="smollm2-fim")
    monkeypatch.setattr(shipped, "SHIPPED", {smol_dir.name: general})
    # Unset, a run starts from it and so teaches its (learned) format, not the native one.
    first = finetuned(fixture_repo, tmp_path / "a", smol_dir)
    assert first["started_from"] == str(general) and first["prompt_format"] == "smollm2-fim"
    # `none` starts from zero in the tokenizer's own format.
    zero = finetuned(fixture_repo, tmp_path / "b", smol_dir, init_adapter="none")
    assert zero["started_from"] is None and zero["prompt_format"] == "prefix-only"


def test_a_general_adapter_that_does_not_fit_is_passed_over_in_one_line(
    fixture_repo: Path,
    smol_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from lsp_server.model import shipped

    general = tmp_path / "general"
    finetuned(fixture_repo, general, smol_dir, max_steps=1, prompt_format="smollm2-fim")
    monkeypatch.setattr(shipped, "SHIPPED", {smol_dir.name: general})
    capsys.readouterr()
    summary = finetuned(fixture_repo, tmp_path / "a", smol_dir, lora_r=8)
    assert summary["started_from"] is None
    said = [line for line in capsys.readouterr().err.splitlines() if "general adapter" in line]
    assert len(said) == 1 and "LoRA rank 16, this run's is 8" in said[0]


def test_an_update_keeps_the_format_of_the_adapter_it_updates(
    repo: Path, smol_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lora"
    finetuned(repo, out, smol_dir, prompt_format="smollm2-fim", init_adapter="none")
    commit(repo, "extra", {"extra.py": "def extra(x):\n    return x * 2\n"})
    summary = finetuned(repo, out, smol_dir, init_adapter="none")
    assert summary["incremental"] is not None and summary["prompt_format"] == "smollm2-fim"


# --- incremental runs ---------------------------------------------------------------------


class Recorded:
    """What an incremental run reads: the files tokenized, the commits mined."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.files: list[list[str]] = []
        self.mined: list[tuple[list[str], int, str]] = []
        sequences, mine = train_module.training_sequences, train_module.mine_examples

        def training_sequences(cfg: Any, fmt: Any, tokenizer: Any, files: list) -> Any:
            self.files.append([f.path for f in files])
            return sequences(cfg, fmt, tokenizer, files)

        def mine_examples(job: Any, tok: Any, device: str, history: Any, commits: list, *a: Any):
            self.mined.append(([c.sha for c in commits], a[0], a[1] if len(a) > 1 else ""))
            return mine(job, tok, device, history, commits, *a)

        monkeypatch.setattr(train_module, "training_sequences", training_sequences)
        monkeypatch.setattr(train_module, "mine_examples", mine_examples)


def new_work(repo: Path) -> None:
    """Three commits of the kind the history teaches, and a new file."""
    app = (repo / "app.py").read_text()
    for i in range(20, 23):
        app = feature(app, i)
        commit(repo, f"feature {i}", {"app.py": app})
    commit(repo, "extra", {"extra.py": "def extra(x):\n    return x * 2\n"})


def test_an_update_trains_on_the_new_commits_and_files_plus_the_replay_share(
    repo: Path, smol_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "lora"
    finetuned(repo, out, smol_dir)
    _, earlier_then, _ = mine_split(repo, 0.1)
    first = meta_of(out)
    assert first["repository"]["history_through"] == earlier_then[-1].sha
    new_work(repo)
    _, earlier_now, _ = mine_split(repo, 0.1)
    learned = {c.sha for c in earlier_then}
    crossed = [c.sha for c in earlier_now if c.sha not in learned]
    assert crossed  # the cut moved: commits held out before are before it now
    recorded = Recorded(monkeypatch)
    summary = finetuned(repo, out, smol_dir)

    _, train_files, _ = split_repository(config(repo, out, smol_dir), repo)
    changed = sorted(f.path for f in train_files if f.path in {"app.py", "extra.py"})
    unchanged = sorted(f.path for f in train_files if f.path not in changed)
    assert changed and [sorted(p) for p in recorded.files] == [changed, unchanged]
    (new_commits, _, _), (old_commits, replay_budget, why) = recorded.mined
    assert new_commits == crossed  # the new commits' next edits, and nothing else new
    assert why == "replay history" and sorted(old_commits) == sorted(learned)
    info = summary["incremental"]
    assert info["new_commits"] == len(crossed) and info["changed_train_files"] == len(changed)
    # The replay: a quarter of the training tokens, half FIM rows, half next edits.
    target = round(info["new_tokens"] * 0.25 / 0.75)
    assert replay_budget == round(target * 0.5)
    assert target <= info["replay_tokens"] < target + TRAIN["seq_len"] + TRAIN["next_edit_seq_len"]
    assert summary["started_from"] == str(out)
    line = data_line(summary["data"], summary["total_steps"], TRAIN["seq_len"])
    assert line.startswith(f"data: an update of {out} since ") and (
        f"{len(changed)} changed training files and {len(crossed)} new commits" in line
    )
    meta = meta_of(out)
    assert meta["training"]["started_from"]["commit"] == first["repository"]["commit"]
    assert meta["repository"]["history_through"] == crossed[-1]
    assert meta["repository"]["commit"] == git(repo, "rev-parse", "HEAD")
    assert meta["tasks"] == ["completion", "next_edit"]


def test_nothing_new_says_so_exits_0_and_writes_nothing(
    repo: Path, smol_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lora"
    argv = [str(repo), "--out", str(out), "--model", str(smol_dir)]
    argv += [arg for k, v in TRAIN.items() for arg in ("--set", f"{k}={v}")]
    assert main(argv) == 0
    capsys.readouterr()
    files = {p: p.read_bytes() for p in out.iterdir()}
    listing = sorted(tmp_path.iterdir())
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nothing new in" in err and "nothing written" in err
    assert {p: p.read_bytes() for p in out.iterdir()} == files and sorted(
        tmp_path.iterdir()
    ) == listing
    # With no --out: the adapter registered for the repository (nothing new there either).
    settings = argv[argv.index("--model") :]
    assert main([str(repo), *settings]) == 0
    assert f"the adapter in {out}" in capsys.readouterr().err
    assert main([str(tmp_path), *settings]) == 2  # not a repository with an adapter
    assert "--out is required: no adapter is registered for" in capsys.readouterr().err
    # A file edited in the work tree after the adapter read it is new; a commit is too.
    (repo / "app.py").write_text((repo / "app.py").read_text() + "\n\ndef later():\n    pass\n")
    cfg = config(repo, out, smol_dir)
    since = find_since(cfg, repo, out, lambda line: None)
    assert since is not None and since.changed == {"app.py"} and not since.new_commits


def test_an_adapter_that_cannot_be_updated_is_retrained_or_refused(
    repo: Path, smol_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lora"
    finetuned(repo, out, smol_dir, max_steps=1)
    lines: list[str] = []
    assert find_since(config(repo, out, smol_dir, lora_r=8), repo, out, lines.append) is None
    assert lines == [
        f"codetailor finetune: training from scratch: the adapter in {out} has "
        "LoRA rank 16, this run's is 8"
    ]
    with pytest.raises(CodetailorError, match="--incremental: .*LoRA rank 16"):
        find_since(config(repo, out, smol_dir, lora_r=8, incremental="on"), repo, out, print)
    assert find_since(config(repo, out, smol_dir, incremental="off"), repo, out, print) is None
    with pytest.raises(NothingNew):
        run(config(repo, out, smol_dir), progress=False)
    other = tmp_path / "other"
    git(tmp_path, "init", "-q", "other")
    commit(other, "start", {"a.py": "x = 1\n"})
    lines.clear()
    assert find_since(config(other, out, smol_dir), other, out, lines.append) is None
    assert "not in" in lines[0]
