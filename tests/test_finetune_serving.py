"""After a fine-tune, the adapter with the better held-out loss serves the repository,
unless the user asks for the new one; the line printed says which one serves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from finetune.serving import register_finished
from lsp_server.model import registry
from tests.fixtures.adapters import fake_adapter, git_repo


@pytest.fixture(autouse=True)
def _own_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))


def scored(path: Path, loss: float | None, heldout_tokens: int = 500) -> Path:
    fake_adapter(path, weights=path.name.encode())  # the name comes from the weights
    meta = json.loads((path / "codetailor.json").read_text())
    meta["evaluation"] = {"after": {"heldout_loss": loss}}
    meta["data"] = {"heldout_tokens": heldout_tokens}
    (path / "codetailor.json").write_text(json.dumps(meta))
    return path


def test_a_worse_new_adapter_is_registered_but_the_better_one_keeps_serving(
    tmp_path: Path,
) -> None:
    repo = git_repo(tmp_path / "widgets")
    good = scored(tmp_path / "forty-steps", 1.5)
    quick = scored(tmp_path / "eight-steps", 2.5)
    assert "it serves" in register_finished(str(repo), str(good))
    line = register_finished(str(repo), str(quick))
    assert "still serves" in line and "1.5000 beats 2.5000" in line and "--serve-new" in line
    assert registry.lookup(repo).path == str(good)
    assert {Path(e.path) for e in registry.load()} == {good, quick}  # both registered


def test_a_better_new_adapter_serves_and_serve_new_overrides(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "widgets")
    first = scored(tmp_path / "first", 2.0)
    better = scored(tmp_path / "better", 1.0)
    worse = scored(tmp_path / "worse", 3.0)
    register_finished(str(repo), str(first))
    assert "it serves (held-out loss 1.0000" in register_finished(str(repo), str(better))
    assert registry.lookup(repo).path == str(better)
    assert "it serves (--serve-new)" in register_finished(str(repo), str(worse), serve_new=True)
    assert registry.lookup(repo).path == str(worse)


def test_figures_on_other_held_out_sets_do_not_compare(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "widgets")
    register_finished(str(repo), str(scored(tmp_path / "a", 1.0, heldout_tokens=100)))
    line = register_finished(str(repo), str(scored(tmp_path / "b", 2.0, heldout_tokens=900)))
    assert "not comparable" in line
    assert registry.lookup(repo).path == str(tmp_path / "b")


def test_the_data_line_says_files_examples_tokens_and_what_is_held_out() -> None:
    from finetune.console import data_line

    stats = {
        "files_kept": 12,
        "skipped": {"binary": 1},
        "redactions": {},
        "train_files": 9,
        "train_sequences": 821,
        "train_tokens": 52520,
        "heldout_files": 3,
        "heldout_tokens": 24183,
    }
    line = data_line(stats, 1, 64)
    assert line == (
        "data: 12 files (1 skipped); 9 to train on: 821 examples of up to 64 tokens "
        "(52,520 tokens); 3 held out (24,183 tokens); 1 step"
    )
