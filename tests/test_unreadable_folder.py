"""A workspace folder the server cannot read (a name too long for the file system, a NUL in
its URI) is skipped with one log line: `initialize` and the status still answer (issue 28)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from lsp_server.feedback import Recording
from lsp_server.model import registry
from lsp_server.session.model_choice import AdapterSource
from lsp_server.session.session import Session
from lsp_server.session.settings import Settings
from tests.fixtures.host import FakeHost

BAD = ["file:///tmp/a%00b", "file:///" + "x" * 300]


@pytest.mark.parametrize("bad", BAD)
@pytest.mark.parametrize("bad_root", [True, False])
def test_an_unreadable_workspace_folder_is_skipped_not_fatal(
    bad: str, bad_root: bool, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = tmp_path / "repo"
    good.mkdir()
    session = Session(
        Settings(model="tiny"),
        FakeHost(None, state="ready"),
        recording=Recording(tmp_path / "home"),
        adapters=AdapterSource(registry.registered_for, registry.stamp, registry.resolve_adapter),
    )
    with caplog.at_level(logging.WARNING):
        root = bad if bad_root else good.as_uri()
        problems = session.initialize({}, root, "utf-16", folders=[bad, good.as_uri()])
        assert problems == []
        status = session.status()
        session.status()
    assert status["settings"]["model"] == "tiny"
    assert len([r for r in caplog.records if "cannot be read" in r.getMessage()]) <= 1
    session.disconnect()
