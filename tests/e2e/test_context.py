"""Cross-file context in the server: the workspace is indexed, other files join the prompt."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.rawclient import RawClient

HELPERS = (
    "def frobnicate_totals(records, weight):\n"
    "    total = 0\n"
    "    for record in records:\n"
    "        total += record.amount * weight\n"
    "    return total\n"
)
MAIN = "from helpers import frobnicate_totals\n\n\ndef report(records):\n    return frobnicate_"


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "helpers.py").write_text(HELPERS)
    (root / "main.py").write_text(MAIN)
    (root / "ignored.py").write_text(HELPERS.replace("frobnicate", "ignored_frobnicate"))
    (root / ".gitignore").write_text("ignored.py\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return root


def status(server: RawClient) -> dict:
    return server.request("workspace/executeCommand", {"command": "codetailor.status"})


def start(model: Path, root: Path, **options) -> RawClient:
    server = RawClient.spawn("--model", str(model))
    server.initialize(options or None, root_uri=root.as_uri())
    assert server.wait_ready()["state"] == "ready"
    return server


def test_workspace_files_are_indexed_and_join_the_prompt(
    tiny_model_dir: Path, workspace: Path
) -> None:
    server = start(tiny_model_dir, workspace)
    try:
        deadline = time.monotonic() + 30
        while status(server)["context"]["indexedFiles"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        context = status(server)["context"]
        assert context["root"] == str(workspace.resolve())
        # helpers.py and main.py; not ignored.py, which .gitignore names, nor
        # .gitignore itself, which is not source (the repository lister's rules)
        assert context["indexedFiles"] == 2
        uri = (workspace / "main.py").as_uri()
        server.open(uri, MAIN)
        server.inline(uri, 4, len("    return frobnicate_"))
        generation = status(server)["lastGeneration"]
        assert generation["context_files"] == ["helpers.py"]
    finally:
        server.shutdown()


def test_context_can_be_turned_off(tiny_model_dir: Path, workspace: Path) -> None:
    server = start(tiny_model_dir, workspace, context=False)
    try:
        uri = (workspace / "main.py").as_uri()
        server.open((workspace / "helpers.py").as_uri(), HELPERS)
        server.open(uri, MAIN)
        server.inline(uri, 4, len("    return frobnicate_"))
        assert status(server)["lastGeneration"]["context_files"] == []
        assert status(server)["context"]["indexedFiles"] == 0
    finally:
        server.shutdown()


def test_open_documents_are_context_without_a_workspace(tiny_model_dir: Path) -> None:
    server = RawClient.spawn("--model", str(tiny_model_dir))
    server.initialize()
    try:
        assert server.wait_ready()["state"] == "ready"
        server.open("file:///elsewhere/helpers.py", HELPERS)
        server.open("file:///elsewhere/main.py", MAIN)
        server.inline("file:///elsewhere/main.py", 4, len("    return frobnicate_"))
        assert status(server)["lastGeneration"]["context_files"] == ["helpers.py"]
    finally:
        server.shutdown()
