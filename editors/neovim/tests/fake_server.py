"""A stand-in language server for the Neovim plugin's tests: fixed answers, no model.

It speaks just enough LSP over stdio (Content-Length framing) for the plugin:
initialize (advertising inline completion), document sync, inline completion
(always the text given with --completion), workspace/executeCommand
(codetailor.accepted, codetailor.status), shutdown and exit. Every message it
receives is appended, one JSON object a line, to the file given with --log.

`fake_server.py finetune REPO --out DIR --json` stands in for `codetailor
finetune`: a progress bar on stderr, the adapter folder, a JSON summary on
stdout (or, with --fail, an error line and status 2). The real
server is tested in tests/e2e/test_neovim_plugin.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
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


def finetune(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="fake finetune")
    parser.add_argument("repo")
    parser.add_argument("--out", required=True)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--model")
    args = parser.parse_args(argv)
    if args.repo.endswith("-fail"):
        print("codetailor: error: no Python files to train on", file=sys.stderr)
        return 2
    for step in range(0, 101, 25):
        bar = "#" * (step // 10)
        print(
            f"\rtrain: {step:3d}%|{bar:<10}| {step}/100 [00:01<00:01, 9.9it/s]",
            end="",
            file=sys.stderr,
        )
    print(file=sys.stderr)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "codetailor.json").write_text(json.dumps({"repository": args.repo}))
    print(json.dumps({"out": args.out, "repo": args.repo, "steps": 100}))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["finetune"]:
        return finetune(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--version", action="version", version="fake-codetailor 0")
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
            command = {
                "title": "accepted",
                "command": "codetailor.accepted",
                "arguments": ["inline"],
            }
            items = [{"insertText": args.completion, "command": command}] if args.completion else []
            result = {"items": items}  # like the real server: no item rather than an empty one
        elif method == "workspace/executeCommand":
            if msg["params"]["command"] == "codetailor.accepted":
                accepted += 1
            result = {
                "state": "ready",
                "model": "fake",
                "adapter": None,
                "counts": {"accepted": accepted},
            }
        elif method == "exit":
            return 0
        if mid is not None and method is not None:
            write({"id": mid, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
