"""A deterministic OpenAI-compatible engine for end-to-end tests: scripted answers, no model.

`codetailor serve --engine openai:URL --model TINY_MODEL_DIR` builds its prompts with
the tiny model's tokenizer and sends them here; this server answers each
`POST /v1/completions` with the text of the first rule whose substring the prompt
contains (else `default`, "" unless set), streamed as server-sent events the way
vLLM streams them (a few characters per chunk, then a finishing chunk, then
`data: [DONE]`). The request's `stop` strings cut the text as a real server would.
Every request body is kept (`requests`), so a test can look at the prompts.

For a next edit, script the updated window: the text the model writes after the
prompt's `updated/{path}` header, i.e. the window as it will be, ending with a
newline (`ScriptedEngine.next_edit`); the line break after the header may be left
out (the server accepts the window with or without it). A substring such as
`current/{path}\n{the window's first line}` picks the request.

Use it from a test:

    with ScriptedEngine() as engine:
        engine.next_edit("current/src/app.py", "def f(b):\\n    return b\\n")
        ... start `codetailor serve --engine openai:{engine.url} --model {tiny_model_dir}`

or as a process (`python -m tests.e2e.scripted_engine --port 8765 --rule 'SUBSTR=TEXT'`,
`--rules FILE.json` holding `[[substring, text], ...]`). Standard library only.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

CHUNK_CHARS = 4  # characters per streamed chunk


class ScriptedEngine:
    """A `/v1/completions` server on 127.0.0.1 that answers scripted text by prompt substring."""

    def __init__(self, port: int = 0, *, default: str = "") -> None:
        self.rules: list[tuple[str, str]] = []
        self.default = default
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add(self, substring: str, text: str) -> None:
        """Answer `text` to prompts containing `substring` (rules added earlier win)."""
        with self._lock:
            self.rules.append((substring, text))

    def next_edit(self, substring: str, updated_window: str) -> None:
        """Answer a next-edit prompt containing `substring` with `updated_window` (the window
        as it will be; a newline is added when it lacks one, as the model ends its lines)."""
        self.add(
            substring, updated_window if updated_window.endswith("\n") else updated_window + "\n"
        )

    def answer(self, prompt: str) -> str:
        with self._lock:
            return next((text for sub, text in self.rules if sub in prompt), self.default)

    def prompts(self) -> list[str]:
        with self._lock:
            return [str(body.get("prompt", "")) for body in self.requests]

    def start(self) -> ScriptedEngine:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def cut_at_stop(text: str, stops: Any) -> tuple[str, bool]:
    """`text` up to its first stop string, and whether one was found."""
    found = [text.find(s) for s in (stops or []) if isinstance(s, str) and s and s in text]
    return (text[: min(found)], True) if found else (text, False)


def sse_chunks(text: str, model: str) -> Iterator[bytes]:
    """The stream of one completion, as vLLM sends it."""
    for i in range(0, len(text), CHUNK_CHARS):
        piece = {"choices": [{"index": 0, "text": text[i : i + CHUNK_CHARS]}], "model": model}
        yield f"data: {json.dumps(piece)}\n\n".encode()
    end = {"choices": [{"index": 0, "text": "", "finish_reason": "stop"}], "model": model}
    yield f"data: {json.dumps(end)}\n\n".encode()
    yield b"data: [DONE]\n\n"


def _handler(engine: ScriptedEngine) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet: stdout may be a test's

        def do_GET(self) -> None:
            if self.path.rstrip("/") in ("/health", "/v1/models", "/models"):
                self._json(200, {"object": "list", "data": []})
            else:
                self._json(404, {"error": {"message": f"no route {self.path}"}})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                self._json(400, {"error": {"message": "malformed JSON"}})
                return
            if not self.path.rstrip("/").endswith("/completions") or not isinstance(body, dict):
                self._json(404, {"error": {"message": f"no route {self.path}"}})
                return
            with engine._lock:
                engine.requests.append(body)
            text, _ = cut_at_stop(engine.answer(str(body.get("prompt", ""))), body.get("stop"))
            model = str(body.get("model", "scripted"))
            if not body.get("stream"):
                choice = {"index": 0, "text": text, "finish_reason": "stop"}
                self._json(200, {"choices": [choice], "model": model})
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                for chunk in sse_chunks(text, model):
                    self.wfile.write(chunk)
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return  # the client closed the stream (its stop rule fired, or a cancel)
            self.close_connection = True

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    parser.add_argument("--rule", action="append", default=[], help="SUBSTRING=TEXT")
    parser.add_argument("--rules", type=Path, help="a JSON file: [[substring, text], ...]")
    parser.add_argument("--default", default="", help="the answer when no rule matches")
    args = parser.parse_args(argv)
    engine = ScriptedEngine(args.port, default=args.default)
    for rule in args.rule:
        substring, _, text = rule.partition("=")
        engine.add(substring, text.encode().decode("unicode_escape"))
    if args.rules:
        for substring, text in json.loads(args.rules.read_text()):
            engine.add(str(substring), str(text))
    print(engine.url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        engine._server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
