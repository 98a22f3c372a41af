"""The layers, checked on the source: no import cycles, imports point down, pure stays pure.

The import graph is read with `ast` from every module of `lsp_server` and
`finetune`, with every import statement counted wherever it stands (top level,
inside functions, under `TYPE_CHECKING`): an import inside a function hides a
cycle, it does not remove it.

Pure modules are the packages `lsp_server.session` and `lsp_server.completion`
and every top-level module of `lsp_server` but the entry points (`cli.py`,
`__main__.py`): small shared modules such as `errors.py` that both sides import.
They import neither pygls nor torch, do no file I/O and start no threads.
`lsp_server.repo` is not pure: it lists and reads a repository's files (`git
ls-files`, bounded reads), so it is an I/O room; it still imports neither pygls
nor torch, since training and serving both read repositories through it. Nor is
`lsp_server.index`, the workspace index's scanner (it reads the workspace's files
into the pure context index on a thread of its own); it imports neither either.

The direction: `model` never imports `session`, `completion` never imports
`model`, directly or through another module. Each rule has a test that plants a
violation and shows the rule catches it.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lsp_server", "finetune")
PURE_PACKAGES = ("lsp_server.session", "lsp_server.completion")
ENTRY_POINTS = ("lsp_server.cli", "lsp_server.__main__")
LIGHT = ("lsp_server.repo", "lsp_server.index")  # I/O rooms that import neither pygls nor torch
LSP_LIBRARIES = ("pygls", "lsprotocol")
MODEL_LIBRARIES = ("torch", "transformers", "peft")
# The benchmarks' one LSP client (pygls' LanguageClient), which drives a real server;
# the server side of the protocol stays in lsp_server.lsp.
LSP_CLIENTS = ("lsp_server.measure.client",)


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


def imported_names(name: str, path: Path, source: str | None = None) -> Iterable[str]:
    """The dotted names `path` (or `source`, its text) imports, relative imports resolved;
    `a.b` for `from a import b`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    text = path.read_text(encoding="utf-8") if source is None else source
    for node in ast.walk(ast.parse(text)):
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


def pure_modules() -> set[str]:
    """The pure packages' modules, and every top-level module of `lsp_server` (a file
    directly in it, its `__init__` included) but the entry points."""
    top = REPO / "lsp_server"
    return {
        name
        for name, path in sources().items()
        if in_package(name, PURE_PACKAGES) or (path.parent == top and name not in ENTRY_POINTS)
    }


def test_pure_modules_are_the_two_packages_and_any_top_level_module(monkeypatch):
    pure = pure_modules()
    assert {"lsp_server", "lsp_server.errors", "lsp_server.session.documents"} <= pure
    assert "lsp_server.completion.prompt" in pure
    assert not pure & {"lsp_server.cli", "lsp_server.model", "lsp_server.repo.files"}
    assert "lsp_server.index.scanner" not in pure  # the workspace index: an I/O room
    # a new top-level module is pure without being named here
    planted = dict(sources()) | {"lsp_server.spec": REPO / "lsp_server" / "spec.py"}
    monkeypatch.setattr(sys.modules[__name__], "sources", lambda: planted)
    assert "lsp_server.spec" in pure_modules()


def test_pure_packages_import_neither_pygls_nor_torch_even_indirectly():
    banned = set(LSP_LIBRARIES + MODEL_LIBRARIES)
    problems = {}
    light = {name for name in sources() if in_package(name, LIGHT)}
    for name in sorted(pure_modules() | light):
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


# -- direction: model never imports session, completion never imports model ---------------


def import_chain(name: str, targets: Iterable[str]) -> list[str] | None:
    """The shortest chain of imports from `name` into one of the `targets` packages."""
    previous: dict[str, str] = {}
    todo = [name]
    while todo:
        module = todo.pop(0)
        if module != name and in_package(module, targets):
            chain = [module]
            while chain[-1] != name:
                chain.append(previous[chain[-1]])
            return chain[::-1]
        for target in sorted(internal(module)):
            if target not in previous and target != name:
                previous[target] = module
                todo.append(target)
    return None


def imports_into(package: str, banned: str) -> dict[str, str]:
    """Each module of `package` whose own import leaves the package and leads, directly or
    through other modules, into `banned`; with the chain, for the message."""
    found = {}
    for name in sorted(sources()):
        if not in_package(name, [package]):
            continue
        for target in sorted(internal(name)):
            if in_package(target, [package]):
                continue  # its own chain, if any, is reported from that module
            chain = import_chain(target, [banned]) if not in_package(target, [banned]) else []
            if chain is not None:
                found[name] = " -> ".join([name, target, *chain[1:]])
                break
    return found


def test_model_never_imports_session():
    assert imports_into("lsp_server.model", "lsp_server.session") == {}


def test_completion_never_imports_model():
    assert imports_into("lsp_server.completion", "lsp_server.model") == {}


def test_the_direction_rules_catch_a_planted_import_direct_or_not(monkeypatch):
    graph = dict(imports())
    graph["lsp_server.model.remote"] |= {"lsp_server.session.documents"}
    graph["lsp_server.completion.healing"] |= {"lsp_server.errors"}
    graph["lsp_server.errors"] |= {"lsp_server.model.int4"}  # completion -> errors -> model
    monkeypatch.setattr(sys.modules[__name__], "imports", lambda: graph)
    into_session = imports_into("lsp_server.model", "lsp_server.session")
    assert into_session["lsp_server.model.remote"].endswith("lsp_server.session.documents")
    into_model = imports_into("lsp_server.completion", "lsp_server.model")
    assert into_model["lsp_server.completion.healing"] == (
        "lsp_server.completion.healing -> lsp_server.errors -> lsp_server.model.int4"
    )


# -- pure modules do no file I/O and start no threads ----------------------------------------
#
# How: each pure module's own source is read with `ast`; every call's callee is named
# through the module's imports (`from os import remove` makes `remove(...)` `os.remove`,
# `import shutil as sh` makes `sh.move` `shutil.move`) and checked against the lists
# below; a method whose name only files have (`.read_text()`, `.mkdir()`, `.resolve()`)
# counts on any receiver (a bare call such as `resolve(text)` is a local function or a
# parameter, not a method, so it does not), and a class that subclasses
# `threading.Thread` counts too.
# Asking the file system counts as I/O (`stat`, `is_dir`, `resolve`, `realpath`): on a
# slow or stuck mount it blocks the caller as a read does; a pure module takes the paths
# and texts it is given.
#
# What it cannot see: types. `path.open()` on a variable looks like `documents.open()`,
# and `.replace`/`.rename`/`.exists` like the string's and the dictionary's, so those are
# only caught as `os.replace`, `Path(...).open()` and the like. Nor I/O done for the
# module elsewhere: a function of another module that it calls (the import rules above
# keep torch and pygls out; an I/O room's function is caught only when its name is a
# file method's, like `read_text`), a logging handler configured elsewhere, `getattr(os,
# "remove")`, or C extensions. Waiting on a thread (`Event`, `Future`, `Lock`) is allowed;
# starting one is not.

FILE_CALLS = frozenset(
    {"open", "io.open", "gzip.open", "os.system", "os.popen", "os.fork"}
    | {
        f"os.{name}"
        for name in (
            "open",
            "fdopen",
            "remove",
            "unlink",
            "replace",
            "rename",
            "renames",
            "mkdir",
            "makedirs",
            "rmdir",
            "removedirs",
            "walk",
            "scandir",
            "listdir",
            "stat",
            "lstat",
            "fsync",
            "read",
            "write",
            "truncate",
            "link",
            "symlink",
            "readlink",
            "chmod",
            "chown",
            "utime",
            "mkfifo",
            "posix_spawn",
        )
    }
    | {
        f"os.path.{name}"
        for name in (
            "exists",
            "lexists",
            "isfile",
            "isdir",
            "islink",
            "getsize",
            "getmtime",
            "realpath",
        )
    }
)
FILE_MODULES = ("shutil", "subprocess", "tempfile", "glob", "fcntl", "socket", "mmap")
FILE_METHODS = frozenset(
    {
        "read_text",
        "write_text",
        "read_bytes",
        "write_bytes",
        "unlink",
        "mkdir",
        "rmdir",
        "touch",
        "iterdir",
        "glob",
        "rglob",
        "symlink_to",
        "hardlink_to",
        "readlink",
        "is_dir",
        "is_file",
        "is_symlink",
        "is_fifo",
        "stat",
        "lstat",
        "resolve",
        "samefile",
        "chmod",
    }
)
THREAD_CALLS = frozenset(
    {
        "threading.Thread",
        "threading.Timer",
        "_thread.start_new_thread",
        "concurrent.futures.ThreadPoolExecutor",
        "concurrent.futures.ProcessPoolExecutor",
        "asyncio.to_thread",
    }
)
THREAD_MODULES = ("multiprocessing",)
THREAD_METHODS = frozenset({"run_in_executor"})


def local_names(tree: ast.AST) -> dict[str, str]:
    """What each name bound by an absolute import stands for: `{"Path": "pathlib.Path"}`."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                root = alias.name.split(".")[0]
                names[alias.asname or root] = alias.name if alias.asname else root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def callee(func: ast.expr, names: dict[str, str]) -> str | None:
    """The dotted name a call goes to, its root resolved through the imports; `None` for
    a callee that is not a name or an attribute chain on one (`f()()`, `x[0]()`)."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if not isinstance(func, ast.Name):
        return None
    root = names.get(func.id, func.id)
    return ".".join([root, *reversed(parts)])


def within(name: str, modules: Iterable[str]) -> bool:
    return any(name.startswith(module + ".") for module in modules)


def call_name(func: ast.expr, names: dict[str, str]) -> str | None:
    """What a call is named for the rules: `callee`, or `pathlib.Path(...).read_text` and
    `(...).resolve` for a method called on what another call returned."""
    if (name := callee(func, names)) is not None or not isinstance(func, ast.Attribute):
        return name
    made = callee(func.value.func, names) if isinstance(func.value, ast.Call) else None
    return f"{made or ''}(...).{func.attr}"


def touches_files_or_threads(name: str) -> bool:
    _, dot, last = name.rpartition(".")
    return (
        name in FILE_CALLS | THREAD_CALLS
        or within(name, FILE_MODULES + THREAD_MODULES)
        or (bool(dot) and last in FILE_METHODS | THREAD_METHODS)
        or name == "pathlib.Path(...).open"
    )


def io_and_threads(source: str) -> list[str]:
    """Each file access and thread start in `source`, in order: `"line 12: os.replace"`."""
    tree = ast.parse(source)
    names = local_names(tree)
    found: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            if "threading.Thread" in {callee(base, names) for base in node.bases}:
                found.append((node.lineno, 0, f"class {node.name}(threading.Thread)"))
        elif isinstance(node, ast.Call):
            name = call_name(node.func, names)
            if name is not None and touches_files_or_threads(name):
                found.append((node.lineno, node.col_offset, name))
    return [f"line {line}: {what}" for line, _, what in sorted(found)]


def test_pure_modules_do_no_file_io_and_start_no_threads():
    problems = {}
    for name in sorted(pure_modules()):
        if found := io_and_threads(sources()[name].read_text(encoding="utf-8")):
            problems[name] = found
    assert problems == {}


def test_the_io_rule_catches_planted_file_access_and_threads():
    planted = """
import os, shutil as sh, threading
from concurrent.futures import ThreadPoolExecutor
from os import replace
from pathlib import Path, PurePath
import subprocess

def write(path, documents, loop, text):
    open(path, "w")
    Path(path).write_text(text)
    path.read_bytes()
    Path(path).open()
    os.remove(path)
    replace(path, path + ".old")
    sh.rmtree(path)
    subprocess.run(["git", "status"])
    threading.Thread(target=print).start()
    ThreadPoolExecutor(1)
    loop.run_in_executor(None, print)

class Writer(threading.Thread):
    pass

def pure(documents, text, cancel, resolve):
    documents.open("file:///a.py", text, 1)  # a method that happens to be called open
    resolve(text)  # a parameter (a function) that happens to share a file method's name
    text.replace("a", "b")
    PurePath("a/b.py").suffix
    threading.Event().wait(0)
    os.path.join("a", "b")
"""
    found = io_and_threads(planted)
    assert [f.split(": ", 1)[1] for f in found] == [
        "open",
        "pathlib.Path(...).write_text",
        "path.read_bytes",
        "pathlib.Path(...).open",
        "os.remove",
        "os.replace",
        "shutil.rmtree",
        "subprocess.run",
        "threading.Thread",
        "concurrent.futures.ThreadPoolExecutor",
        "loop.run_in_executor",
        "class Writer(threading.Thread)",
    ]


# -- tests: shared fakes live in tests/fixtures/, no test module imports another -------------


def imported_test_modules(name: str, path: Path, source: str | None = None) -> set[str]:
    """The test modules (`test_*.py` under tests/) that the file `name` at `path` imports."""
    found = set()
    for target in imported_names(name, path, source):
        parts = target.split(".")
        if parts[0] != "tests":
            continue
        for i, part in enumerate(parts):
            if part.startswith("test_"):
                found.add(".".join(parts[: i + 1]))
                break
    return found - {name}


def test_no_test_module_imports_another():
    problems = {}
    for path in sorted((REPO / "tests").rglob("*.py")):
        if found := imported_test_modules(module_name(path), path):
            problems[module_name(path)] = sorted(found)
    assert problems == {}, "move what they share into tests/fixtures/"


def test_the_test_import_rule_catches_a_planted_import():
    planted = (
        "from tests.test_session import FakeHost\n"
        "from . import test_engine\n"
        "import tests.e2e.test_transport\n"
        "from tests.fixtures.host import ScriptedCompleter\n"
        "from tests.e2e.rawclient import RawClient\n"
    )
    path = REPO / "tests" / "test_planted.py"
    assert imported_test_modules("tests.test_planted", path, planted) == {
        "tests.test_session",
        "tests.test_engine",
        "tests.e2e.test_transport",
    }


MAX_FUNCTION_LINES = 60


def long_functions(modules: dict[str, Path]) -> dict[str, int]:
    """`module:function` -> its length in lines (decorators and docstring included) for
    every function of `modules` over MAX_FUNCTION_LINES."""
    found = {}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([d.lineno for d in node.decorator_list] + [node.lineno])
                length = (node.end_lineno or node.lineno) - start + 1
                if length > MAX_FUNCTION_LINES:
                    found[f"{name}:{node.name}"] = length
    return found


def test_no_function_is_longer_than_sixty_lines() -> None:
    """A function reads in one sitting: none in lsp_server or finetune is over 60 lines."""
    assert long_functions(sources()) == {}


def test_the_function_length_rule_catches_a_long_one(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    planted = tmp_path / "planted.py"
    planted.write_text(f"def short():\n    return 1\n\n\ndef long():\n{body}\n")
    assert long_functions({"planted": planted}) == {"planted:long": MAX_FUNCTION_LINES + 1}
