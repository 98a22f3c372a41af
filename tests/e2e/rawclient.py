"""A small synchronous LSP client over a server subprocess's stdio or a TCP socket.

It speaks JSON-RPC frame by frame and can also write raw bytes, which the
robustness tests need (malformed JSON, wrong Content-Length). Requests from the
server (e.g. `window/workDoneProgress/create`) are answered with `null`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


def server_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lsp_server.cli", "serve", *args]


def frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class RawClient:
    """Send requests and notifications, collect responses and notifications by a thread."""

    def __init__(self, read_chunk, write, close) -> None:
        self._read_chunk = read_chunk
        self._write = write
        self._close = close
        self._ids = itertools.count(1)
        self._responses: dict[Any, dict[str, Any]] = {}
        self._cond = threading.Condition()
        self.notifications: list[dict[str, Any]] = []
        self.server_requests: list[dict[str, Any]] = []
        self.closed = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def spawn(cls, *args: str, env: dict[str, str] | None = None) -> RawClient:
        proc = subprocess.Popen(
            server_command(*args),
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        client = cls(
            lambda: os.read(proc.stdout.fileno(), 65536),
            lambda data: (proc.stdin.write(data), proc.stdin.flush()),
            proc.stdin.close,
        )
        client.proc = proc
        client.stderr_lines: list[str] = []
        threading.Thread(target=client._drain_stderr, daemon=True).start()
        return client

    @classmethod
    def connect(cls, host: str, port: int) -> RawClient:
        sock = socket.create_connection((host, port), timeout=30)
        sock.settimeout(None)

        def close() -> None:
            # shutdown() first: a plain close() does not send FIN while the reader
            # thread is still blocked in recv() on the same socket.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

        return cls(lambda: sock.recv(65536), sock.sendall, close)

    def _drain_stderr(self) -> None:
        for line in self.proc.stderr:
            text = line.decode(errors="replace")
            self.stderr_lines.append(text)
            if os.environ.get("CODETAILOR_TEST_STDERR"):
                sys.stderr.write(text)

    # -- wire ------------------------------------------------------------------------------------

    def _pump(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._read_chunk()
            except OSError:
                chunk = b""
            if not chunk:
                with self._cond:
                    self.closed = True
                    self._cond.notify_all()
                return
            buffer += chunk
            while (end := buffer.find(b"\r\n\r\n")) >= 0:
                header = buffer[:end].decode()
                length = int(header.split("Content-Length:")[1].split("\r\n")[0])
                if len(buffer) < end + 4 + length:
                    break
                message = json.loads(buffer[end + 4 : end + 4 + length])
                buffer = buffer[end + 4 + length :]
                self._received(message)

    def _received(self, message: dict[str, Any]) -> None:
        if "method" in message and "id" in message:  # a request from the server
            self.server_requests.append(message)
            self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
        with self._cond:
            if "method" not in message:
                self._responses[message.get("id")] = message
            elif "id" not in message:
                self.notifications.append(message)
            self._cond.notify_all()

    def send_raw(self, data: bytes) -> None:
        self._write(data)

    def send(self, message: dict[str, Any]) -> None:
        self._write(frame(message))

    def notify(self, method: str, params: Any = None) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request_async(self, method: str, params: Any = None) -> int:
        msg_id = next(self._ids)
        self.send({"jsonrpc": "2.0", "id": msg_id, "method": method, "params": params})
        return msg_id

    def response(self, msg_id: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while msg_id not in self._responses:
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise TimeoutError(f"no response to request {msg_id}")
                self._cond.wait(left)
            return self._responses.pop(msg_id)

    def request(self, method: str, params: Any = None, timeout: float = 30) -> Any:
        """The result of a request; an error response raises RuntimeError."""
        reply = self.response(self.request_async(method, params), timeout)
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply.get("result")

    def wait_for(self, predicate, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for note in self.notifications:
                    if predicate(note):
                        return note
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise TimeoutError("notification not received")
                self._cond.wait(left)

    def wait_closed(self, timeout: float = 10) -> bool:
        """True once the other side has hung up."""
        with self._cond:
            return self._cond.wait_for(lambda: self.closed, timeout)

    # -- LSP helpers -----------------------------------------------------------------------------

    def initialize(
        self,
        options: dict[str, Any] | None = None,
        root_uri: str | None = None,
        **capabilities: Any,
    ) -> Any:
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root_uri,
                "capabilities": {"window": {"workDoneProgress": True}, **capabilities},
                "initializationOptions": options or {},
            },
        )
        self.notify("initialized", {})
        return result

    def status(self) -> dict[str, Any]:
        return self.request("workspace/executeCommand", {"command": "codetailor.status"})

    def wait_status(
        self, done: Callable[[dict[str, Any]], bool], what: str, timeout: float = 10
    ) -> dict[str, Any]:
        """The first `codetailor.status` for which `done` holds, polled within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if done(status):
                return status
            time.sleep(0.02)
        raise TimeoutError(f"{what} (within {timeout} s)")

    def wait_ready(self, timeout: float = 120) -> dict[str, Any]:
        return self.wait_status(
            lambda s: s["state"] in ("ready", "failed"), "the model did not load", timeout
        )

    def wait_generating(self, since: int = 0, timeout: float = 10) -> int:
        """The number of the request the model is working on, once one after `since` runs."""
        status = self.wait_status(
            lambda s: (s["generating"] or 0) > since, "no generation started", timeout
        )
        return status["generating"]

    def open(self, uri: str, text: str, language: str = "python", version: int = 1) -> None:
        self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": language,
                    "version": version,
                    "text": text,
                }
            },
        )

    def inline(self, uri: str, line: int, character: int, timeout: float = 30) -> list[dict]:
        result = self.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": character},
                "context": {"triggerKind": 2},
            },
            timeout,
        )
        return result["items"] if isinstance(result, dict) else (result or [])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._close()
        proc = getattr(self, "proc", None)
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def shutdown(self) -> int | None:
        self.request("shutdown")
        self.notify("exit")
        proc = getattr(self, "proc", None)
        return proc.wait(timeout=10) if proc is not None else None


def listening_port(client: RawClient) -> int:
    """The TCP port a server started with `--tcp HOST:0` says on stderr it listens on."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for line in client.stderr_lines:
            if match := re.search(r"listening on ([\d.]+):(\d+)", line):
                return int(match.group(2))
        time.sleep(0.05)
    raise TimeoutError("the server did not start listening")
