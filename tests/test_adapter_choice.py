"""`adapter: auto`: which adapter answers a workspace and why (pure), and how the session
asks the host for it: loaded at start, swapped in when the registry changes."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lsp_server.session.adapter_choice import Registered, choose_adapter
from lsp_server.session.model_choice import ADAPTER_POLL_S, AdapterSource
from lsp_server.session.session import Request, Session
from lsp_server.session.settings import Settings
from lsp_server.spec import AdapterRef, ModelSpec
from tests.fixtures.host import FakeHost, ScriptedCompleter

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

    def lookup(self, root: str, base: str | None = None) -> Registered | None:
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


class RoutingHost(FakeHost):
    """A ready host holding one scripted completer per adapter it was asked for."""

    def __init__(self) -> None:
        super().__init__(None, state="idle")
        self.completers: dict[AdapterRef | None, ScriptedCompleter] = {}

    def hold(self, adapters: Sequence[AdapterRef | None]) -> None:
        for adapter in adapters:
            self.completers.setdefault(adapter, ScriptedCompleter(*[f"by {adapter}"] * 4))
        self.completer = self.completers[adapters[0]]

    def load(self, spec: ModelSpec, adapters: Sequence[AdapterRef | None] = (None,)) -> None:
        super().load(spec, adapters)
        self.hold(adapters)
        self.state = "ready"

    def swap(self, spec: ModelSpec, adapters: Sequence[AdapterRef | None] = (None,)) -> None:
        super().swap(spec, adapters)
        self.hold(adapters)

    def completer_for(self, adapter: AdapterRef | None) -> ScriptedCompleter | None:
        return self.completers.get(adapter, self.completer)


def two_folders(tmp_path: Path) -> tuple[Session, RoutingHost, Registry, list[Path]]:
    """A session on folders a/ (nothing registered), b/ (an adapter) and c/ (another)."""
    folders = [tmp_path / name for name in "abc"]
    registry = Registry()
    registry.register(str(folders[1]), Registered("b-1", "/adapters/b", "by remote"))
    registry.register(str(folders[2]), Registered("c-1", "/adapters/c", "by path"))
    host = RoutingHost()
    session = Session(Settings(model="tiny", context=False), host, adapters=registry.source())
    uris = [folder.as_uri() for folder in folders[:2]]
    session.initialize({}, uris[0], "utf-16", folders=uris)
    return session, host, registry, folders


async def ask(session: Session, path: Path) -> str:
    uri = path.as_uri()
    session.open(uri, "x = ", 1, "python")
    doc = session.documents.get(uri)
    assert doc is not None
    return await session.complete(Request(uri, "x = ", 4, doc.revision))


def test_each_workspace_folder_gets_its_own_adapter_and_says_who_answers(tmp_path):
    session, host, _, (first, second, _) = two_folders(tmp_path)
    assert [s.adapter for s in host.loads] == [None]  # the first folder's: the default
    assert host.adapter_sets == [(None, "/adapters/b")]  # and every folder's
    a, b, outside = session.status()["workspaceAdapters"]
    assert a == {
        "root": str(first),
        "adapter": None,
        "name": None,
        "reason": "none registered: base model",
        "answeredBy": None,
        "answeredWhy": "fake",
    }
    assert b["adapter"] == "/adapters/b" and b["answeredBy"] == "/adapters/b"
    assert b["reason"] == f"registered for {second} (by remote)"
    assert outside["root"] is None and outside["answeredBy"] is None
    assert "outside every workspace folder" in outside["reason"]


async def test_a_document_is_answered_by_its_folders_adapter(tmp_path):
    session, host, _, (first, second, _) = two_folders(tmp_path)
    assert await ask(session, second / "pkg" / "m.py") == "by /adapters/b"
    assert await ask(session, first / "m.py") == "by None"
    assert await ask(session, tmp_path / "elsewhere.py") == "by None"  # the first folder's


async def test_folders_added_and_removed_change_the_adapters_in_use(tmp_path):
    session, host, _, (first, second, third) = two_folders(tmp_path)
    session.change_folders([third.as_uri()], [])
    assert host.adapter_sets[-1] == (None, "/adapters/b", "/adapters/c")
    assert len(host.swaps) == 1 and len(host.loads) == 1  # loaded behind the answering ones
    assert await ask(session, third / "m.py") == "by /adapters/c"
    session.change_folders([], [first.as_uri()])  # the first folder goes: b/ is the default
    assert host.adapter_sets[-1] == ("/adapters/b", "/adapters/c")
    assert session.models.choice.adapter == "/adapters/b"
    assert await ask(session, tmp_path / "elsewhere.py") == "by /adapters/b"
    assert [row["root"] for row in session.status()["workspaceAdapters"]] == [
        str(second),
        str(third),
        None,
    ]


def test_the_workspace_folders_are_one_object_that_the_context_and_adapters_read(tmp_path):
    session, _, _, (first, second, third) = two_folders(tmp_path)
    assert session.workspace.workspace is session.folders is session.models.folders.workspace
    inside_third = (third / "pkg" / "m.py").as_uri()
    assert session.workspace.path_of(inside_third) == "m.py"  # outside every folder
    session.change_folders([third.as_uri()], [first.as_uri()])
    assert session.folders.folders == session.models.folders.folders == [str(second), str(third)]
    assert session.workspace.path_of(inside_third) == "pkg/m.py"
    assert session.folders.root == str(first)  # the workspace served stays


def test_auto_never_chooses_an_adapter_for_another_base_model(tmp_path):
    other = Registered(
        "r-1", "/adapters/r", "by path", refused="trained for base model 'x', not 'y'"
    )
    choice = choose_adapter("auto", str(tmp_path), other)
    assert choice.adapter is None
    assert choice.reason == (
        f"r-1 is registered for {tmp_path} (by path) but was trained for base model 'x', "
        "not 'y': base model"
    )


def test_a_document_belongs_to_its_innermost_folder():
    from lsp_server.session.adapter_choice import FolderAdapters
    from lsp_server.session.folders import WorkspaceFolders

    folders = FolderAdapters(WorkspaceFolders(folders=["/src/mono", "/src/mono/svc", "/src/other"]))
    assert folders.folder_of("/src/mono/svc/api.py") == "/src/mono/svc"
    assert folders.folder_of("/src/mono/lib/x.py") == "/src/mono"
    assert folders.folder_of("/src/monolith/x.py") is None  # a prefix, not a parent
    assert folders.folder_of(None) is None
