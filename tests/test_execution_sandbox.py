"""Model-written code runs isolated when scored (finding 13), or is not run at all.

Each hostile candidate reaches past the Python-level guards (the raw `_socket`
module, `os.posix_spawn`, plain file writes); the sandbox must contain it.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from lsp_server.measure.quality import execution
from lsp_server.measure.quality.execution import NO_SANDBOX, run_tests

CHECK = "def check(candidate):\n    assert candidate()\n"


@pytest.fixture(params=["bwrap", "unshare"])
def sandbox(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each sandbox in turn (the other one hidden); skipped where it does not work here."""
    tool = shutil.which(request.param)
    if tool is None or not execution._works(tool):
        pytest.skip(f"{request.param} cannot build a sandbox on this machine")
    real_which = shutil.which
    monkeypatch.setattr(
        execution.shutil, "which", lambda name: real_which(name) if name == request.param else None
    )
    return request.param


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.setblocking(False)
    yield server
    server.close()


def test_a_raw_socket_to_loopback_gets_nowhere(sandbox: str, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    program = (
        "import _socket\n"
        "def f():\n"
        "    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
        f"    s.connect(('127.0.0.1', {port}))\n"
        "    return True\n"
    )
    outcome = run_tests(program, CHECK, "f", timeout=20)
    assert outcome.status == "failed", outcome
    with pytest.raises(BlockingIOError):  # connect() had returned: no connection was made
        listener.accept()


def test_a_shell_started_with_posix_spawn_cannot_write_outside(
    sandbox: str, tmp_path: Path
) -> None:
    target = tmp_path / "spawned"
    program = (
        "import os\n"
        "def f():\n"
        f"    pid = os.posix_spawn('/bin/sh', ['sh', '-c', 'echo pwned > {target}'], {{}})\n"
        "    os.waitpid(pid, 0)\n"
        f"    return os.path.exists({str(target)!r})\n"
    )
    outcome = run_tests(program, CHECK, "f", timeout=20)
    assert outcome.status == "failed", outcome
    assert not target.exists()


def test_writes_outside_the_working_folder_fail(sandbox: str, tmp_path: Path) -> None:
    target = tmp_path / "written"
    program = f"def f():\n    open({str(target)!r}, 'w').write('x')\n    return True\n"
    outcome = run_tests(program, CHECK, "f", timeout=20)
    assert outcome.status == "failed" and not target.exists(), outcome


def test_the_working_folder_is_writable_and_a_right_answer_passes(sandbox: str) -> None:
    program = (
        "def f():\n"
        "    open('scratch.txt', 'w').write('ok')\n"
        "    return open('scratch.txt').read() == 'ok'\n"
    )
    assert run_tests(program, CHECK, "f", timeout=20).passed


def test_the_process_limit_binds_even_when_the_server_is_root(sandbox: str) -> None:
    """RLIMIT_NPROC does not bind uid 0, in a user namespace too (issue 28): a fork loop
    must still stop at the limit."""
    program = (
        "import os, time\n"
        "def f():\n"
        "    for i in range(100):\n"
        "        try:\n"
        "            if os.fork() == 0:\n"
        "                time.sleep(3)\n"
        "                os._exit(0)\n"
        "        except OSError:\n"
        "            return i < 100\n"
        "    return False\n"
    )
    assert run_tests(program, CHECK, "f", timeout=20).passed


@pytest.mark.parametrize("secret", [__file__, str(Path.home()), "/etc/passwd"])
def test_the_users_files_are_not_in_view(sandbox: str, secret: str) -> None:
    """The program sees the system's programs and libraries, not a user's files (this
    repository, the home folder, the machine's configuration)."""
    program = f"import os\ndef f():\n    return not os.path.exists({secret!r})\n"
    outcome = run_tests(program, CHECK, "f", timeout=20)
    assert outcome.passed, outcome


def test_without_a_sandbox_nothing_runs_and_pass_at_1_is_not_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from lsp_server.measure.quality.humaneval_eval import evaluate_humaneval_line

    monkeypatch.setattr(execution.shutil, "which", lambda name: None)
    target = tmp_path / "ran"
    outcome = run_tests(f"def f():\n    open({str(target)!r}, 'w')\n", CHECK, "f")
    assert outcome.status == "unscored" and outcome.detail == NO_SANDBOX
    assert not target.exists()
    summary, _ = evaluate_humaneval_line(lambda text, offset: ("", 1.0), samples=2)
    assert summary["pass_at_1"] is None and "no sandbox" in summary["pass_at_1_note"]
    assert summary["exact_match"] is not None
