"""The workspace (findings 6 and 7): a new root never waits on a stuck scan, and secrets
in other files and open documents never reach the prompt."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from lsp_server.completion.prompt import FORMATS, PREFIX_ONLY, build_prompt
from lsp_server.index import WorkspaceScanner, scanner
from lsp_server.session.documents import Documents
from lsp_server.session.workspace import WorkspaceContext
from tests.fixtures.secrets import APP, AWS, KEY, PASSWORD, SETTINGS


def test_a_new_root_never_waits_for_a_stuck_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "stale.py").write_text("def stale_helper(): pass\n")
    (tmp_path / "b" / "fresh.py").write_text("def fresh_helper(): pass\n")
    gate, listing = threading.Event(), threading.Event()
    real = scanner.indexable_files

    def slow_listing(root: Path) -> list[str]:
        if root.name == "a":  # e.g. `git ls-files` on a slow disk, or a pipe
            listing.set()
            gate.wait(60)
        return real(root)

    monkeypatch.setattr(scanner, "indexable_files", slow_listing)
    workspace = WorkspaceContext(WorkspaceScanner())
    workspace.workspace.open((tmp_path / "a").as_uri())
    workspace.index_root(scan=True)
    assert listing.wait(10)
    returned = threading.Event()

    def second_initialize() -> None:  # what the event loop does on the next `initialize`
        workspace.workspace.open((tmp_path / "b").as_uri())
        workspace.index_root(scan=True)
        returned.set()

    threading.Thread(target=second_initialize, daemon=True).start()
    try:
        assert returned.wait(5), "index_root blocked on the stuck scan (a join on the loop)"
    finally:
        gate.set()
    assert workspace.scanner.wait(timeout=30)
    for thread in threading.enumerate():
        if thread.name == "codetailor-index":
            thread.join(30)
    assert "fresh.py" in workspace.index and "stale.py" not in workspace.index


def test_a_secret_in_another_file_or_document_never_reaches_the_prompt(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "settings.py").write_text(SETTINGS)
    (tmp_path / "app.py").write_text(APP)
    (tmp_path / "deploy_key.py").write_text(KEY)
    workspace = WorkspaceContext(WorkspaceScanner())
    workspace.workspace.open(tmp_path.as_uri())
    workspace.index_root(scan=True)
    assert workspace.scanner.wait(timeout=60)
    documents = Documents()
    # An open, edited document holding a secret, and one outside the workspace.
    open_uri = (tmp_path / "db" / "local.py").as_uri()
    documents.open(open_uri, f'def connect_database():\n    token = "{AWS}"\n', 1)
    workspace.changed(open_uri)
    elsewhere = (tmp_path.parent / "notes.py").as_uri()
    documents.open(elsewhere, f"def connect_database(): pw = '{PASSWORD}'  # open_connection\n", 1)
    workspace.changed(elsewhere)
    snippets = workspace.snippets(documents, (tmp_path / "app.py").as_uri(), APP, len(APP))
    assert {s.path for s in snippets} >= {"db/settings.py", "db/local.py"}
    assert "notes.py" not in {s.path for s in snippets}
    for fmt in (PREFIX_ONLY, FORMATS["qwen2.5-coder"], FORMATS["starcoder"]):
        prompt = build_prompt(fmt, APP, "", path="app.py", context=snippets)
        assert "connect_database" in prompt and "<PASSWORD>" in prompt
        assert AWS not in prompt and PASSWORD not in prompt and "b3Blbn" not in prompt
