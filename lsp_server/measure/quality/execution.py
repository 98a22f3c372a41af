"""Run a candidate program against its tests in a separate, constrained Python process.

The program is model output, so it runs in a fresh interpreter (`-I`: no user
site, no environment variables), in an empty temporary directory, with sockets
disabled, CPU time and memory capped, and a wall-clock timeout after which its
whole process group is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from typing import Literal

Status = Literal["passed", "failed", "timeout"]

# Runs before the candidate: no network, no subprocesses, bounded resources.
_PRELUDE = textwrap.dedent(
    """
    import resource, socket, os, subprocess
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_CPU, ({cpu}, {cpu}))
    def _refuse(*args, **kwargs):
        raise PermissionError("disabled while scoring")
    socket.socket = _refuse
    socket.create_connection = _refuse
    subprocess.Popen = _refuse
    os.system = _refuse
    del resource, socket, os, subprocess, _refuse
    """
)


@dataclass(frozen=True)
class Outcome:
    status: Status
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def run_tests(program: str, test: str, entry_point: str, timeout: float = 10.0) -> Outcome:
    """Run `program`, then `test`, then `check(entry_point)`; passed when it exits cleanly."""
    source = "\n".join(
        [_PRELUDE.format(cpu=max(int(timeout) + 1, 2)), program, test, f"check({entry_point})", ""]
    )
    with tempfile.TemporaryDirectory(prefix="codetailor-score-") as workdir:
        script = os.path.join(workdir, "candidate.py")
        with open(script, "w", encoding="utf-8") as f:
            f.write(source)
        proc = subprocess.Popen(
            [sys.executable, "-I", script],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0"},
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
