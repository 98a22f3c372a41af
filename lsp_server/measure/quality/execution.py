"""Run a candidate program against its tests in an isolated, constrained Python process.

The program is model output, so it is treated as hostile. It runs in a fresh
interpreter (`-I`: no user site, no environment variables) inside a sandbox:

- bubblewrap (`bwrap`) where installed, else util-linux `unshare`: new user,
  network, PID and mount namespaces. There is no network (not even loopback),
  and the program sees a file system of its own: the system's programs and
  libraries (`/usr` and its links) and the interpreter's own folder, read-only,
  and a throwaway working folder; never the user's files (home, repositories).
  The whole process tree dies with its first process;
- resource limits: CPU time, memory, file size and the number of processes. The
  process limit does not bind uid 0 (the kernel exempts it, in a user namespace
  too), so a server running as root runs the program as `nobody` (65534) with an
  interpreter that user can reach;
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
import stat
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["passed", "failed", "timeout", "unscored"]
NO_SANDBOX = (
    "not run: no sandbox on this machine (install bubblewrap, or allow unprivileged "
    "user namespaces for `unshare`); pass@1 is not measured, only exact match"
)
NOBODY = 65534  # who runs the program when the server is root: the process limit binds it
# What the program may see of the system, read-only (links are kept as links).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")

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

# For `unshare`: inside the new namespaces, build a root of its own on a tmpfs (the
# system paths and the interpreter's folder read-only, the working folder writable, a
# fresh /proc, /tmp and the harmless /dev nodes), make it read-only, and run there.
_UNSHARE_SCRIPT = """
set -e
work="$1"; python_home="$2"; shift 2
new=$(mktemp -d)
mount -t tmpfs -o mode=755 sandbox "$new"
for d in /usr /bin /sbin /lib /lib32 /lib64 "$python_home"; do
  if [ -e "$new$d" ] || [ -L "$new$d" ]; then continue; fi
  if [ -L "$d" ]; then ln -s "$(readlink "$d")" "$new$d"
  elif [ -d "$d" ]; then
    mkdir -p "$new$d"; mount --rbind "$d" "$new$d"; mount -o remount,bind,ro "$new$d"
  fi
done
mkdir -p "$new/proc" "$new/dev" "$new/tmp"
mount -t tmpfs -o mode=1777 tmp "$new/tmp"
mkdir -p "$new$work"
mount --bind "$work" "$new$work"
mount -t proc proc "$new/proc"
for n in null zero random urandom; do
  touch "$new/dev/$n"; mount --bind "/dev/$n" "$new/dev/$n"
done
mount -o remount,ro,bind "$new"
chroot=$(PATH="$PATH:/usr/sbin:/sbin" command -v chroot)
exec "$chroot" "$new" /bin/sh -c 'cd "$1" && shift && exec "$@"' sandbox "$work" "$@"
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
    python = interpreter()
    if python is None:
        return None
    for name in ("bwrap", "unshare"):
        tool = shutil.which(name)
        if tool and _works(tool):
            return _prefix_for(tool, workdir, python_home(python))
    return None


def _as_root() -> bool:
    return os.geteuid() == 0


def interpreter() -> str | None:
    """The Python the program runs on: this one (its real file, not a virtual
    environment's link: the program gets the standard library only). As root, one that
    `nobody` can reach (this one may live under /root): else the system's; None if none."""
    candidates = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
    for path in candidates:
        real = os.path.realpath(path)
        if os.path.isfile(real) and (not _as_root() or _reachable_by_others(Path(real))):
            return real
    return None


def _reachable_by_others(path: Path) -> bool:
    """Whether a user other than the owner may run `path` (every folder above it open)."""
    try:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False
        return all(os.stat(p).st_mode & stat.S_IXOTH for p in path.parents)
    except OSError:
        return False


def python_home(python: str) -> str:
    """The folder holding the interpreter and its standard library (`.../bin/python3` ->
    `...`), which the sandbox shows read-only."""
    return str(Path(python).parent.parent)


def _prefix_for(tool: str, workdir: str, home: str) -> list[str]:
    if os.path.basename(tool) == "bwrap":
        return [
            tool,
            *_bwrap_system(home),
            "--dev", "/dev",
            "--proc", "/proc",
            "--tmpfs", "/tmp",
            "--bind", workdir, workdir,
            "--chdir", workdir,
            "--unshare-all",  # user, network, PID, IPC, UTS and cgroup namespaces
            "--unshare-user",  # always (--unshare-all only tries): the process limit binds
            "--die-with-parent",
            "--new-session",
            "--",
        ]  # fmt: skip
    return [
        tool, "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork",
        "--kill-child", "--mount-proc", "sh", "-c", _UNSHARE_SCRIPT, "sandbox", workdir, home,
    ]  # fmt: skip


def _bwrap_system(home: str) -> list[str]:
    """bwrap's arguments that show the system paths and `home` read-only, links as links."""
    args: list[str] = []
    for path in (*SYSTEM_PATHS, home):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path) and path not in args:
            args += ["--ro-bind", path, path]
    return args


@functools.cache
def _works(tool: str) -> bool:
    """Whether `tool` can build the sandbox here (user namespaces may be disabled)."""
    python = interpreter()
    if python is None:
        return False
    with tempfile.TemporaryDirectory(prefix="codetailor-probe-") as workdir:
        _give_to_sandbox_user(workdir)
        try:
            done = subprocess.run(
                [*_prefix_for(tool, workdir, python_home(python)), python, "-I", "-c", "pass"],
                capture_output=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
                user=_sandbox_user(),
                group=_sandbox_user(),
                extra_groups=[] if _as_root() else None,
            )
        except (OSError, subprocess.SubprocessError):
            return False
    return done.returncode == 0


def _sandbox_user() -> int | None:
    """Who runs the sandbox: `nobody` when this process is root, else the same user."""
    return NOBODY if _as_root() else None


def _give_to_sandbox_user(workdir: str) -> None:
    """Let the sandbox's user own the working folder (it is `nobody` when we are root)."""
    if _as_root():
        os.chown(workdir, NOBODY, NOBODY)


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
        _give_to_sandbox_user(workdir)
        os.chmod(script, 0o644)
        proc = subprocess.Popen(
            [*prefix, str(interpreter()), "-I", script],
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"},
            start_new_session=True,  # its own process group, killed whole on timeout
            user=_sandbox_user(),
            group=_sandbox_user(),
            extra_groups=[] if _as_root() else None,
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
