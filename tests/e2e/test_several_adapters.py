"""Several workspace folders, each with its own adapter, in one real server process.

Two repositories with the same files and different registered adapters: each
folder's documents get the answers a server with that one adapter gives; a folder
added later (nothing registered: the base model) is answered by the base model once
its didChangeWorkspaceFolders is handled, with no failed request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lsp_server.model import registry
from lsp_server.model.loading import load_model
from tests.e2e.rawclient import RawClient
from tests.fixtures.adapters import make_adapter
from tests.fixtures.repo import CURSORS, DOC, make_repo

pytestmark = pytest.mark.usefixtures("one_thread")

OPTIONS = {"maxTokens": 6, "multiline": "never", "context": False}


@pytest.fixture
def repos(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_model_dir: Path) -> dict[str, Path]:
    """Repositories a/ and b/ (an adapter registered for each) and c/ (none), with the
    same files; a registry of the test's own, which the server process inherits."""
    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path / "home"))
    base = load_model(str(tiny_model_dir))
    meta = {
        "base_model": {"name": base.name, "fingerprint": base.fingerprint},
        "prompt_format": "prefix-only",
    }
    roots = {name: make_repo(tmp_path / name, modules=6, git=False) for name in "abc"}
    for name, seed in (("a", 0), ("b", 1)):
        adapter = make_adapter(tiny_model_dir, tmp_path / f"lora-{name}", meta, seed=seed)
        registry.register_adapter(roots[name], adapter, name=f"lora-{name}")
    return roots


def folder(root: Path) -> dict[str, str]:
    return {"uri": root.as_uri(), "name": root.name}


def serve(model: Path, *roots: Path) -> RawClient:
    """`codetailor serve --model TINY` on these workspace folders, with no --adapter; in
    float32, where merged and unmerged adapters give the same greedy text (bf16, the auto
    dtype of CPUs with AMX or AVX512-BF16, rounds the two ways apart on a tiny model)."""
    client = RawClient.spawn("--model", str(model), "--dtype", "float32")
    client.request(
        "initialize",
        {
            "processId": None,
            "rootUri": roots[0].as_uri(),
            "workspaceFolders": [folder(root) for root in roots],
            "capabilities": {"window": {"workDoneProgress": True}},
            "initializationOptions": OPTIONS,
        },
    )
    client.notify("initialized", {})
    assert client.wait_ready()["state"] == "ready"
    return client


def answers(client: RawClient, root: Path) -> list[str]:
    uri = f"{root.as_uri()}/{DOC}"
    client.open(uri, (root / DOC).read_text())
    return [
        "".join(item["insertText"] for item in client.inline(uri, line, col))
        for line, col in CURSORS
    ]


def settled(client: RawClient, swaps: int) -> dict[str, Any]:
    """The status once `swaps` adapter swaps have finished."""
    return client.wait_status(
        lambda s: s["swaps"] >= swaps and not s["swapping"], "the adapters did not load", 60
    )


def alone(model: Path, repos: dict[str, Path]) -> dict[str, list[str]]:
    """What a server with one adapter gives: a/'s, then b/'s, then none (set by setting)."""
    client = serve(model, repos["a"])
    try:
        seen = {"a": answers(client, repos["a"])}
        for name, adapter in (("b", str(repos["b"].parent / "lora-b")), ("c", "none")):
            swaps = client.status()["swaps"]
            client.notify("workspace/didChangeConfiguration", {"settings": {"adapter": adapter}})
            settled(client, swaps + 1)
            seen[name] = answers(client, repos["a"])  # the same text as in b/ and c/
        return seen
    finally:
        client.close()


def test_each_folder_is_answered_by_its_own_adapter_and_added_folders_load_theirs(
    repos: dict[str, Path], tiny_model_dir: Path
) -> None:
    expected = alone(tiny_model_dir, repos)
    assert len({tuple(a) for a in expected.values()}) == 3, expected  # three different answers
    client = serve(tiny_model_dir, repos["a"], repos["b"])
    try:
        status = client.status()
        assert status["adapters"]["mode"] == "unmerged"
        rows = {row["root"]: row for row in status["workspaceAdapters"]}
        assert rows[str(repos["b"])]["name"] == "lora-b"
        assert rows[str(repos["b"])]["answeredBy"] == rows[str(repos["b"])]["adapter"]
        assert rows[str(repos["b"])]["answeredWhy"] == "loaded unmerged, selected per request"
        assert answers(client, repos["a"]) == expected["a"]
        assert answers(client, repos["b"]) == expected["b"]
        outside = status["workspaceAdapters"][-1]  # c/ is outside every folder for now
        assert outside["root"] is None and outside["answeredBy"] == rows[str(repos["a"])]["adapter"]
        answers(client, repos["c"])
        client.notify(
            "workspace/didChangeWorkspaceFolders",
            {"event": {"added": [folder(repos["c"])], "removed": []}},
        )
        # The base model is already held beside the adapters (they learned no next edits),
        # so adding a folder that has none needs no swap: wait for its row instead.
        status = client.wait_status(
            lambda s: len(s["workspaceAdapters"]) > 3 and not s["swapping"],
            "the added folder was not answered for",
            60,
        )
        assert status["workspaceAdapters"][2]["reason"] == "none registered: base model"
        assert answers(client, repos["c"]) == expected["c"]
        assert answers(client, repos["b"]) == expected["b"]
        client.notify(
            "workspace/didChangeWorkspaceFolders",
            {"event": {"added": [], "removed": [folder(repos["a"]), folder(repos["b"])]}},
        )
        status = client.wait_status(
            lambda s: s["adapters"]["mode"] == "base" and not s["swapping"],
            "the removed folders' adapters were not dropped",
            60,
        )
        assert answers(client, repos["c"]) == expected["c"]
        empty = status["emptyAnswers"]
        assert empty["failed"] == empty["not_ready"] == 0, empty
    finally:
        client.close()
