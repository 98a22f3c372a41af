"""The layers, checked on the source: no import cycles, pure packages stay pure.

The import graph is read with `ast` from every module of `lsp_server` and
`finetune`, with every import statement counted wherever it stands (top level,
inside functions, under `TYPE_CHECKING`): an import inside a function hides a
cycle, it does not remove it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lsp_server", "finetune")
PURE = ("lsp_server.session", "lsp_server.completion", "lsp_server.repo", "lsp_server.spec")
LSP_LIBRARIES = ("pygls", "lsprotocol")
MODEL_LIBRARIES = ("torch", "transformers", "peft")
# Benchmarks that drive a real server as an LSP client (pygls' LanguageClient); the
# server side of the protocol stays in lsp_server.lsp.
LSP_CLIENTS = (
    "lsp_server.measure.latency",
    "lsp_server.measure.server_overhead",
    "lsp_server.measure.simulated_user",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def sources() -> dict[str, Path]:
    """Every module of the two packages, by dotted name."""
    return {
        module_name(path): path
        for package in PACKAGES
        for path in sorted((REPO / package).rglob("*.py"))
    }


def imported_names(name: str, path: Path) -> Iterable[str]:
    """The dotted names `path` imports, relative imports resolved; `a.b` for `from a import b`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


@cache
def imports() -> dict[str, frozenset[str]]:
    """Every module's imports: internal ones as module names, external ones as given."""
    modules = sources()
    graph: dict[str, frozenset[str]] = {}
    for name, path in modules.items():
        found = set()
        for target in imported_names(name, path):
            if target.split(".")[0] not in PACKAGES:
                found.add(target)
                continue
            while target and target not in modules:  # `from pkg import function`
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
        graph[name] = frozenset(found)
    return graph


def internal(name: str) -> set[str]:
    return {t for t in imports()[name] if t.split(".")[0] in PACKAGES}


def external(name: str) -> set[str]:
    return {t.split(".")[0] for t in imports()[name] if t.split(".")[0] not in PACKAGES}


def cycles() -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(internal(node)):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(imports()):
        if node not in index:
            visit(node)
    return found


def reachable(name: str) -> set[str]:
    """`name` and every internal module it imports, directly or not."""
    seen, todo = {name}, [name]
    while todo:
        for target in internal(todo.pop()):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def in_package(name: str, packages: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def test_the_graph_sees_the_packages_and_their_imports():
    graph = imports()
    assert "lsp_server.lsp.handlers" in graph and "finetune.train" in graph
    assert "lsp_server.lsp.server" in internal("lsp_server.lsp.handlers")
    assert "pygls" in external("lsp_server.lsp.server")
    # a function-level import counts: the model host loads the real model lazily
    assert "lsp_server.model.loading" in internal("lsp_server.model.host")


def test_no_module_is_in_an_import_cycle():
    assert cycles() == []


def test_the_cycle_finder_finds_a_cycle(monkeypatch):
    graph = dict(imports())
    graph["lsp_server.session.settings"] |= {"lsp_server.session.session"}
    monkeypatch.setattr(sys.modules[__name__], "imports", lambda: graph)
    assert any("lsp_server.session.settings" in c for c in cycles())


def test_pure_packages_import_neither_pygls_nor_torch_even_indirectly():
    banned = set(LSP_LIBRARIES + MODEL_LIBRARIES)
    problems = {}
    for name in sources():
        if not in_package(name, PURE):
            continue
        for module in reachable(name):
            if used := external(module) & banned:
                problems[name] = (module, sorted(used))
    assert problems == {}


def test_only_the_lsp_package_speaks_lsp():
    speakers = {name for name in sources() if external(name) & set(LSP_LIBRARIES)}
    outside = {name for name in speakers if not in_package(name, ["lsp_server.lsp"])}
    assert outside <= set(LSP_CLIENTS), sorted(outside - set(LSP_CLIENTS))


def test_lsp_server_never_imports_finetune():
    servers = [name for name in sources() if in_package(name, ["lsp_server"])]
    offenders = {n for n in servers if any(in_package(t, ["finetune"]) for t in internal(n))}
    assert offenders == set()


def test_pygls_private_names_are_used_in_one_module_only():
    allowed = REPO / "lsp_server" / "lsp" / "pygls_compat.py"
    private = ("._send_response", "._request_futures", "._server", "lsp_method")
    users = {
        module_name(path)
        for path in (REPO / "lsp_server").rglob("*.py")
        if path != allowed and any(p in path.read_text(encoding="utf-8") for p in private)
    }
    assert users == set()
