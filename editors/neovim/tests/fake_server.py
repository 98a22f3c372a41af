"""A stand-in language server for the Neovim plugin's tests: fixed answers, no model.

It speaks just enough LSP over stdio (Content-Length framing) for the plugin:
initialize (advertising inline completion), document sync, inline completion
(always the text given with --completion), next edits
(`textDocument/copilotInlineEdit`: with --next-edit OLD=>NEW, the first OLD in
the document becomes NEW, wherever the cursor is; no OLD, no edit),
workspace/executeCommand (codetailor.accepted, codetailor.acceptedNextEdit,
codetailor.status), shutdown and exit. The Emacs tests use it too. Every message it
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


def position(text: str, offset: int) -> dict[str, int]:
    """The LSP position (UTF-16 columns) of `offset` in `text`."""
    line = text.count("\n", 0, offset)
    start = text.rfind("\n", 0, offset) + 1
    return {"line": line, "character": len(text[start:offset].encode("utf-16-le")) // 2}


def next_edit(text: str, uri: str, version: int, rule: str | None, stale: bool) -> dict[str, Any]:
    """The answer to `textDocument/copilotInlineEdit`: the first OLD becomes NEW (OLD=>NEW)."""
    if not rule:
        return {"edits": []}
    old, _, new = rule.partition("=>")
    at = text.find(old)
    if at < 0:
        return {"edits": []}
    edit = {
        "text": new,
        "range": {"start": position(text, at), "end": position(text, at + len(old))},
        "textDocument": {"uri": uri, "version": version - 1 if stale else version},
        "command": {
            "title": "Accept next edit",
            "command": "codetailor.acceptedNextEdit",
            "arguments": ["fake-edit-1"],
        },
    }
    return {"edits": [edit]}


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


CAPABILITIES = {
    "textDocumentSync": 1,
    "inlineCompletionProvider": True,
    "completionProvider": {},
    "executeCommandProvider": {
        "commands": ["codetailor.accepted", "codetailor.acceptedNextEdit", "codetailor.status"]
    },
}


class Fake:
    """The server's state: the documents (full sync) and the count of acceptances."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.accepted = 0
        self.documents: dict[str, tuple[int, str]] = {}  # uri -> (version, text)

    def answer(self, method: str | None, params: Any) -> Any:
        """The result for a request (None for a notification)."""
        if method == "initialize":
            info = {"name": "fake-codetailor", "version": "0"}
            return {"capabilities": CAPABILITIES, "serverInfo": info}
        if method == "textDocument/inlineCompletion":
            command = {
                "title": "accepted",
                "command": "codetailor.accepted",
                "arguments": ["inline"],
            }
            text = self.args.completion
            # like the real server: no item rather than an empty one
            return {"items": [{"insertText": text, "command": command}] if text else []}
        if method in ("textDocument/didOpen", "textDocument/didChange"):
            doc = params["textDocument"]
            opened = method.endswith("didOpen")
            text = doc["text"] if opened else params["contentChanges"][-1]["text"]
            self.documents[doc["uri"]] = (doc["version"], text)
        if method == "textDocument/copilotInlineEdit":
            uri = params["textDocument"]["uri"]
            version, text = self.documents.get(uri, (0, ""))
            return next_edit(text, uri, version, self.args.next_edit, self.args.stale)
        if method == "workspace/executeCommand":
            if params["command"] in ("codetailor.accepted", "codetailor.acceptedNextEdit"):
                self.accepted += 1
            counts = {"accepted": self.accepted}
            return {"state": "ready", "model": "fake", "adapter": None, "counts": counts}
        return None


def main() -> int:
    if sys.argv[1:2] == ["finetune"]:
        return finetune(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--version", action="version", version="fake-codetailor 0")
    parser.add_argument("--completion", default=" + b")
    parser.add_argument("--log", default=None)
    parser.add_argument("--next-edit", default=None, help="OLD=>NEW: the next edit to suggest")
    parser.add_argument("--stale", action="store_true", help="answer next edits for an old version")
    fake = Fake(parser.parse_args())
    while (msg := read()) is not None:
        if fake.args.log:
            with open(fake.args.log, "a") as f:
                f.write(json.dumps(msg) + "\n")
        method, mid = msg.get("method"), msg.get("id")
        if method == "exit":
            return 0
        result = fake.answer(method, msg.get("params"))
        if mid is not None and method is not None:
            write({"id": mid, "result": result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
