"""Run a candidate program against its tests in an isolated, constrained Python process.

The program is model output, so it is treated as hostile. It runs in a fresh
interpreter (`-I`: no user site, no environment variables) inside a sandbox:

- bubblewrap (`bwrap`) where installed, else util-linux `unshare`: new user,
  network, PID and mount namespaces. There is no network (not even loopback),
  every file system is read-only except a throwaway working folder, and the
  whole process tree dies with its first process;
- resource limits: CPU time, memory, file size and the number of processes;
- a wall-clock timeout after which its whole process group is killed.

Where neither sandbox works (another OS, user namespaces disabled), nothing is
run: `run_tests` answers "unscored" and says why, and callers score by exact
match only. Python-level guards (sockets, subprocess) remain as a second line.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from typing import Literal

Status = Literal["passed", "failed", "timeout", "unscored"]
NO_SANDBOX = (
    "not run: no sandbox on this machine (install bubblewrap, or allow unprivileged "
    "user namespaces for `unshare`); pass@1 is not measured, only exact match"
)

# Runs before the candidate: bounded resources, and Python-level guards as a second line.
_PRELUDE = textwrap.dedent(
    """
    import resource, socket, os, subprocess
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
    resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
    resource.setrlimit(resource.RLIMIT_NPROC, (32, 32))
    def _refuse(*args, **kwargs):
        raise PermissionError("disabled while scoring")
    socket.socket = _refuse
    socket.create_connection = _refuse
    subprocess.Popen = _refuse
    os.system = _refuse
    del resource, socket, os, subprocess, _refuse
    """
)

# For `unshare`: inside the new namespaces, keep the working folder writable,
# make every other mount read-only (the root must succeed), then run.
_UNSHARE_SCRIPT = """
set -e
work="$1"; shift
mount --bind "$work" "$work"
mount -o remount,bind,ro /
awk '{print $5}' /proc/self/mountinfo | while read -r mp; do
  [ "$mp" = "$work" ] || [ "$mp" = / ] || mount -o remount,bind,ro "$mp" 2>/dev/null || true
done
cd "$work"
exec "$@"
"""


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def sandbox_prefix(workdir: str) -> list[str] | None:
    """The command that runs what follows it isolated, with `workdir` writable; None if none."""
    for name in ("bwrap", "unshare"):
        tool = shutil.which(name)
        if tool and _works(tool):
            return _prefix_for(tool, workdir)
    return None


def _prefix_for(tool: str, workdir: str) -> list[str]:
    if os.path.basename(tool) == "bwrap":
        return [
            tool,
            "--ro-bind", "/", "/",
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--bind", workdir, workdir,
            "--chdir", workdir,
            "--unshare-all",  # user, network, PID, IPC, UTS and cgroup namespaces
            "--die-with-parent",
            "--new-session",
            "--",
        ]  # fmt: skip
    return [
        tool, "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
        "--kill-child", "--mount-proc", "sh", "-c", _UNSHARE_SCRIPT, "sandbox", workdir,
    ]  # fmt: skip


@functools.cache
def _works(tool: str) -> bool:
    """Whether `tool` can build the sandbox here (user namespaces may be disabled)."""
    with tempfile.TemporaryDirectory(prefix="codetailor-probe-") as workdir:
        try:
            done = subprocess.run(
                [*_prefix_for(tool, workdir), sys.executable, "-I", "-c", "pass"],
                capture_output=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def run_tests(program: str, test: str, entry_point: str, timeout: float = 10.0) -> Outcome:
    """Run `program`, then `test`, then `check(entry_point)`; passed when it exits cleanly.

    "unscored" when this machine has no sandbox: model-written code is never
    run without one.
    """
    source = "\n".join(
        [_PRELUDE.format(cpu=max(int(timeout) + 1, 2)), program, test, f"check({entry_point})", ""]
    )
    with tempfile.TemporaryDirectory(prefix="codetailor-score-") as workdir:
        prefix = sandbox_prefix(workdir)
        if prefix is None:
            return Outcome("unscored", NO_SANDBOX)
        script = os.path.join(workdir, "candidate.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(source)
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-I", script],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"},
            start_new_session=True,  # its own process group, killed whole on timeout
        )
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Outcome("timeout", f"no result within {timeout:g} s")
    if proc.returncode == 0:
        return Outcome("passed")
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return Outcome("failed", lines[-1] if lines else f"exit status {proc.returncode}")
