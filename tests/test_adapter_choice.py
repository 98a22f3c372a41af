"""`adapter: auto`: which adapter answers a workspace and why (pure), and how the session
asks the host for it: loaded at start, swapped in when the registry changes."""

from __future__ import annotations

import time
from typing import Any

from lsp_server.session.adapter_choice import Registered, choose_adapter
from lsp_server.session.session import ADAPTER_POLL_S, AdapterSource, Session
from lsp_server.session.settings import Settings
from tests.test_session import FakeHost

MINE = Registered("repo-1234abcd", "/adapters/one", "by path")


def test_auto_uses_the_adapter_registered_for_the_workspace_and_says_why():
    choice = choose_adapter("auto", "/src/repo", MINE)
    assert choice.adapter == "/adapters/one" and choice.name == "repo-1234abcd"
    assert choice.reason == "registered for /src/repo (by path)"
    clone = choose_adapter("auto", "/tmp/clone", Registered("r", "/a", "by remote"))
    assert clone.reason == "registered for /tmp/clone (by remote)"


def test_auto_falls_back_to_the_base_model():
    assert choose_adapter("auto", "/src/repo", None).as_dict() == {
        "adapter": None,
        "name": None,
        "reason": "none registered: base model",
    }
    assert choose_adapter("auto", None, MINE).adapter is None  # no workspace: nothing to match


def test_none_and_a_fixed_adapter_ignore_the_registry():
    assert choose_adapter("none", "/src/repo", MINE).adapter is None
    assert choose_adapter(None, "/src/repo", MINE).adapter is None
    fixed = choose_adapter("/my/lora", "/src/repo", MINE, command_line="/my/lora")
    assert (fixed.adapter, fixed.reason) == ("/my/lora", "set by --adapter")
    client = choose_adapter("/their/lora", "/src/repo", MINE, command_line="auto")
    assert client.reason == "set by the adapter setting"


class Registry:
    """The registry as the session sees it, changed by the test."""

    def __init__(self) -> None:
        self.held: dict[str, Registered] = {}
        self.version = 0
        self.lookups = 0

    def register(self, root: str, entry: Registered) -> None:
        self.held[root] = entry
        self.version += 1

    def lookup(self, root: str) -> Registered | None:
        self.lookups += 1
        return self.held.get(root)

    def source(self) -> AdapterSource:
        return AdapterSource(self.lookup, lambda: self.version)


def started(registry: Registry, root: str, **settings: Any) -> tuple[Session, FakeHost]:
    host = FakeHost(None, state="idle")
    session = Session(Settings(model="tiny", **settings), host, adapters=registry.source())
    session.initialize({}, f"file://{root}", "utf-16")
    return session, host


def test_the_session_loads_the_registered_adapter_and_reports_why(tmp_path):
    registry = Registry()
    registry.register(str(tmp_path), MINE)
    session, host = started(registry, str(tmp_path))
    assert [s.adapter for s in host.loads] == ["/adapters/one"]
    assert session.settings.adapter == "auto"  # what the user set stays as set
    assert session.status()["adapterChoice"]["reason"] == f"registered for {tmp_path} (by path)"


def test_a_new_registration_swaps_behind_a_ready_model_and_nothing_else_does(tmp_path):
    registry = Registry()
    session, host = started(registry, str(tmp_path))
    assert [s.adapter for s in host.loads] == [None]
    host.state = "ready"
    later = time.monotonic() + 10 * ADAPTER_POLL_S  # the test clock, ahead of the real one
    assert session.check_adapters(now=later)  # looked: nothing changed, nothing asked
    assert host.swaps == [] and len(host.loads) == 1
    registry.register(str(tmp_path), MINE)
    assert not session.check_adapters(now=later + ADAPTER_POLL_S / 4)  # too soon to look
    assert session.check_adapters(now=later + ADAPTER_POLL_S)
    assert [s.adapter for s in host.swaps] == ["/adapters/one"] and len(host.loads) == 1
    assert session.status()["adapterChoice"]["adapter"] == "/adapters/one"
    # The same registry again: no second swap.
    assert session.check_adapters(now=later + 3 * ADAPTER_POLL_S)
    assert len(host.swaps) == 1


def test_a_fixed_adapter_is_not_swapped_by_the_registry(tmp_path):
    registry = Registry()
    session, host = started(registry, str(tmp_path), adapter="none")
    host.state = "ready"
    registry.register(str(tmp_path), MINE)
    session.check_adapters(now=time.monotonic() + 10 * ADAPTER_POLL_S)
    assert host.swaps == [] and [s.adapter for s in host.loads] == [None]
    assert session.status()["adapterChoice"]["reason"] == "adapter set to none: base model"


def test_each_workspace_folder_is_reported_and_the_first_ones_adapter_answers(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    registry = Registry()
    registry.register(str(second), Registered("b-1", "/adapters/b", "by remote"))
    host = FakeHost(None, state="idle")
    session = Session(Settings(model="tiny"), host, adapters=registry.source())
    uris = [first.as_uri(), second.as_uri()]
    session.initialize({}, uris[0], "utf-16", folders=uris)
    assert [s.adapter for s in host.loads] == [None]  # one adapter per server: the first's
    a, b = session.status()["workspaceAdapters"]
    assert a == {
        "root": str(first),
        "adapter": None,
        "reason": "none registered: base model",
        "answeredBy": None,
    }
    assert b["adapter"] == "/adapters/b" and b["answeredBy"] is None
    assert b["reason"] == (
        f"registered for {second} (by remote); the first folder's adapter answers here"
    )
