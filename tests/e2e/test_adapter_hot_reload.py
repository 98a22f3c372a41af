"""`adapter: auto` and hot reload against the real server process, on the tiny model.

A fine-tune registers its adapter; a server opened on that repository (or on a
fresh clone of it) answers with it without `--adapter`; a fine-tune finished
while the server runs is swapped in with no restart and no failed request.
"""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from finetune.cli import main as finetune
from tests.e2e.rawclient import RawClient
from tests.fixtures.repo import CURSORS, DOC, make_repo

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "https://example.com/team/fixture.git"
# Cursors in pkg/mod00.py where the tiny model's answer depends on its weights.
SWAP_BOUND_S = 120.0  # the fine-tune (a few steps) plus loading the adapter


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An adapter registry of the test's own (the server process inherits it)."""
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = make_repo(tmp_path / "repo", modules=6)
    subprocess.run(["git", "-C", str(root), "remote", "add", "origin", REMOTE], check=True)
    return root


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The debug recipe cut to seconds, with a learning rate that moves the tiny model."""
    path = tmp_path_factory.mktemp("recipe") / "fast.yaml"
    values = yaml.safe_load((ROOT / "finetune" / "configs" / "debug.yaml").read_text())
    values |= {
        "match_samples": 0,
        "eval_blocks": 2,
        "lr": 5e-2,
        "warmup_fraction": 0.0,
        "patience": 0,
    }
    path.write_text(yaml.safe_dump(values))
    return str(path)


def run_finetune(repo: Path, out: Path, model: Path, recipe: str) -> None:
    argv = [str(repo), "--out", str(out), "--model", str(model), "--config", recipe]
    assert finetune([*argv, "--seq-len", "64", "--max-steps", "6", "--holdout", "0"]) == 0


def serve_on(root: Path, model: Path) -> RawClient:
    """`codetailor serve --model TINY` opened on `root`: no --adapter flag."""
    client = RawClient.spawn("--model", str(model))
    client.initialize({"maxTokens": 6, "multiline": "never"}, root_uri=root.as_uri())
    assert client.wait_ready()["state"] == "ready"
    client.open(f"{root.as_uri()}/{DOC}", (root / DOC).read_text())
    return client


def answers(client: RawClient, root: Path) -> list[str]:
    uri = f"{root.as_uri()}/{DOC}"
    return [
        "".join(item["insertText"] for item in client.inline(uri, line, col))
        for line, col in CURSORS
    ]


def test_a_fresh_clone_is_served_with_its_repositorys_adapter(
    home: Path, repo: Path, tiny_model_dir: Path, recipe: str, tmp_path: Path
) -> None:
    out = tmp_path / "lora"
    run_finetune(repo, out, tiny_model_dir, recipe)
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(repo), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "remote", "set-url", "origin", REMOTE], check=True)
    client = serve_on(clone, tiny_model_dir)
    try:
        status = client.status()
        assert status["adapter"] == str(out.resolve())
        assert status["adapterChoice"]["reason"] == f"registered for {clone} (by remote)"
        assert status["settings"]["adapter"] == "auto"
        assert all(isinstance(a, str) for a in answers(client, clone))
        assert client.status()["emptyAnswers"]["failed"] == 0
    finally:
        client.close()


def test_a_finetune_while_the_server_runs_is_swapped_in_without_a_failed_request(
    home: Path, repo: Path, tiny_model_dir: Path, recipe: str, tmp_path: Path
) -> None:
    client = serve_on(repo, tiny_model_dir)
    try:
        status = client.status()
        assert status["adapter"] is None and status["swaps"] == 0
        assert status["adapterChoice"]["reason"] == "none registered: base model"
        before = answers(client, repo)
        done = threading.Event()
        trainer = threading.Thread(
            target=lambda: (
                run_finetune(repo, tmp_path / "lora", tiny_model_dir, recipe),
                done.set(),
            ),
            daemon=True,
        )
        trainer.start()
        deadline = time.monotonic() + SWAP_BOUND_S
        while client.status()["swaps"] == 0:  # requests keep coming while it trains and swaps
            answers(client, repo)
            assert trainer.is_alive() or done.is_set(), "the fine-tune failed"
            assert time.monotonic() < deadline, "no swap"
        trainer.join(SWAP_BOUND_S)
        status = client.wait_status(lambda s: not s["swapping"], "the swap did not finish")
        after = answers(client, repo)
        assert status["adapter"] == str((tmp_path / "lora").resolve())
        assert status["adapterChoice"]["reason"] == f"registered for {repo} (by path)"
        assert status["swaps"] == 1 and status["lastSwapSeconds"] > 0
        assert after != before, (before, after)
        empty = status["emptyAnswers"]
        assert empty["failed"] == empty["not_ready"] == empty["cancelled"] == 0, empty
        progress = [n for n in client.notifications if n["method"] == "$/progress"]
        assert any("switched to adapter" in str(n["params"]) for n in progress)
    finally:
        client.close()
