"""`codetailor serve` on a terminal (a pty) says what it is, loads with progress, says
ready and how to connect; an editor's stdio session is unaffected (stdout holds only LSP)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import pytest

from lsp_server.lsp.terminal import TerminalNotes, tee, wanted

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "lsp_server.cli"]


def _env() -> dict[str, str]:
    return os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _ctrl_c_reaches_it() -> None:
    """In the child before exec: a person's Ctrl-C reaches the server as it would from a
    shell. A test run started as a background job of a non-interactive shell ignores
    SIGINT, and its children inherit that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _read_until(fd: int, needle: str, seen: list[str], deadline: float) -> bool:
    while time.monotonic() < deadline:
        if needle in "".join(seen):
            return True
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                return needle in "".join(seen)
            if not chunk:
                break
            seen.append(chunk.decode("utf-8", "replace"))
    return needle in "".join(seen)


def test_serve_on_a_terminal_says_what_loading_ready_and_how_to_connect(
    tiny_model_dir: Path,
) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*PY, "serve", "--model", str(tiny_model_dir), "--compile", "off"],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=_env(),
        cwd=ROOT,
        preexec_fn=_ctrl_c_reaches_it,
    )
    os.close(follower)
    seen: list[str] = []
    try:
        deadline = time.monotonic() + 120
        assert _read_until(leader, "VS Code", seen, deadline), "".join(seen)
        os.write(leader, b"hello?\n")  # a person typing gets told how it works
        assert _read_until(leader, "that is not LSP", seen, time.monotonic() + 10), "".join(seen)
        proc.send_signal(signal.SIGINT)
        _read_until(leader, "interrupted", seen, time.monotonic() + 10)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    text = "".join(seen)
    assert "language server" in text and "waits for an editor on stdin" in text
    assert f"model {tiny_model_dir}" in text and "device auto" in text
    assert "loading" in text
    assert "ready" in text and "s after start" in text
    for editor in ("VS Code", "Neovim", "Emacs"):
        assert editor in text
    assert "interrupted" in text  # Ctrl-C says so
    assert proc.stdout is not None and proc.stdout.read() == b""  # stdout: the protocol only


def test_a_failed_load_on_a_terminal_is_one_line_and_no_lsp_before_an_editor(
    tmp_path: Path,
) -> None:
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*PY, "serve", "--model", str(tmp_path / "no-such-model")],
        stdin=follower,
        stdout=subprocess.PIPE,
        stderr=follower,
        env=_env(),
        cwd=ROOT,
        preexec_fn=_ctrl_c_reaches_it,
    )
    os.close(follower)
    seen: list[str] = []
    try:
        assert _read_until(leader, "codetailor: cannot load", seen, time.monotonic() + 60)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)
    assert "codetailor: cannot load" in "".join(seen)
    assert proc.stdout is not None and proc.stdout.read() == b""  # no showMessage to nobody


def _frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def test_stdio_session_stdout_holds_only_lsp_frames(tiny_model_dir: Path) -> None:
    messages: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "shutdown"},
        {"jsonrpc": "2.0", "method": "exit"},
    ]
    done = subprocess.run(
        [*PY, "serve", "--model", str(tiny_model_dir), "--compile", "off"],
        input=b"".join(_frame(m) for m in messages),
        capture_output=True,
        env=_env(),
        cwd=ROOT,
        timeout=120,
    )
    out = done.stdout
    while out:
        assert out.startswith(b"Content-Length: "), out[:80]
        header, _, rest = out.partition(b"\r\n\r\n")
        length = int(header.split(b"\r\n")[0].split(b":")[1])
        json.loads(rest[:length])
        out = rest[length:]
    assert b"connect an editor" not in done.stderr  # no terminal: no notes for a person


class _Stream:
    def __init__(self) -> None:
        self.text = ""

    def write(self, s: str) -> int:
        self.text += s
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_notes_follow_the_model_events() -> None:
    stream = _Stream()
    clock = iter([0.0, 0.0, 1.0, 2.0, 3.5, 3.5]).__next__
    notes = TerminalNotes(stream, clock=clock)  # type: ignore[arg-type]
    calls: list[str] = []
    on_event = tee(lambda kind, *_: calls.append(kind), notes.event)
    on_event("begin", "loading tiny", 0)
    on_event("report", "loaded tiny on cpu in 1.0 s", 80)
    on_event("end", "ready: tiny on cpu in 3.5 s", 100)
    assert calls == ["begin", "report", "end"]
    assert "codetailor: loading tiny" in stream.text
    assert "loaded tiny on cpu in 1.0 s (80%)" in stream.text
    assert "ready: tiny on cpu in 3.5 s (ready 3.5 s after start)" in stream.text
    assert "Neovim" in stream.text


@pytest.mark.parametrize("tcp", [False, True])
def test_wanted_only_for_a_terminal(tcp: bool) -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    assert wanted(tcp, stdin=Tty(), stderr=Tty())
    assert not wanted(tcp, stdin=_Stream(), stderr=_Stream())


def _read_frame(stream: IO[bytes]) -> dict[str, Any]:
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return json.loads(stream.read(length))


def _editor_session_until_ready(model: Path, *extra: str) -> str:
    """An editor's session: initialize, wait for "ready" in its log, shut down; the stderr."""
    proc = subprocess.Popen(
        [*PY, "serve", "--model", str(model), "--compile", "off", *extra],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(),
        cwd=ROOT,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
    initialized = {"jsonrpc": "2.0", "method": "initialized", "params": {}}
    proc.stdin.write(_frame(init) + _frame(initialized))
    proc.stdin.flush()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the editor hears "ready" in its log
            message = _read_frame(proc.stdout)
            if "ready" in str(message.get("params", {}).get("message", "")):
                break
        for message in ({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}, {"method": "exit"}):
            proc.stdin.write(_frame({"jsonrpc": "2.0"} | message))
        proc.stdin.close()
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.stderr.read().decode()


def test_verbose_logs_reach_stderr_and_the_file_while_an_editor_is_connected(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    stderr = _editor_session_until_ready(tiny_model_dir, "-v")
    assert "ready: tiny" in stderr  # -v: stderr too, not the editor only
    log_file = tmp_path / "serve.log"
    _editor_session_until_ready(tiny_model_dir, "--log-file", str(log_file))
    assert "ready: tiny" in log_file.read_text()
