"""A stand-in language server for the Neovim plugin's tests: fixed answers, no model.

It speaks just enough LSP over stdio (Content-Length framing) for the plugin:
initialize (advertising inline completion), document sync, inline completion
(always the text given with --completion), workspace/executeCommand
(codetailor.accepted, codetailor.status), shutdown and exit. Every message it
receives is appended, one JSON object a line, to the file given with --log. The real
server is tested in tests/e2e/test_neovim_plugin.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def read() -> dict[str, Any] | None:
    length = None
    while True:
        line = sys.stdin.buffer.readline()
        if not line:
            return None
        if line in (b"\r\n", b"\n"):
            break
        name, _, value = line.decode("ascii").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    body = sys.stdin.buffer.read(length or 0)
    return json.loads(body)


def write(message: dict[str, Any]) -> None:
    body = json.dumps({"jsonrpc": "2.0", **message}).encode()
    sys.stdout.buffer.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
    sys.stdout.buffer.flush()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--completion", default=" + b")
    parser.add_argument("--log", default=None)
    args = parser.parse_args()
    accepted = 0
    while (msg := read()) is not None:
        if args.log:
            with open(args.log, "a") as f:
                f.write(json.dumps(msg) + "\n")
        method, mid = msg.get("method"), msg.get("id")
        result: Any = None
        if method == "initialize":
            result = {
                "capabilities": {
                    "textDocumentSync": 1,
                    "inlineCompletionProvider": True,
                    "completionProvider": {},
                    "executeCommandProvider": {
                        "commands": ["codetailor.accepted", "codetailor.status"]
                    },
                },
                "serverInfo": {"name": "fake-codetailor", "version": "0"},
            }
        elif method == "textDocument/inlineCompletion":
            command = {"title": "accepted", "command": "codetailor.accepted", "arguments": ["inline"]}
            items = [{"insertText": args.completion, "command": command}] if args.completion else []
            result = {"items": items}  # like the real server: no item rather than an empty one
        elif method == "workspace/executeCommand":
            if msg["params"]["command"] == "codetailor.accepted":
                accepted += 1
            result = {"state": "ready", "model": "fake", "adapter": None, "counts": {"accepted": accepted}}
        elif method == "exit":
            return 0
        if mid is not None and method is not None:
            write({"id": mid, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
