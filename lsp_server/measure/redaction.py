"""How well the secret filter works: recall on planted secrets, false positives on ordinary code.

    python -m lsp_server.measure.redaction tests/assets/planted_secrets*.json \
        --code /usr/lib/python3.11 --recursive --json

Recall: the share of planted secrets (JSON lists of objects with `kind`,
`path`, `text`, `secret`; one figure per file and one for all) of which nothing
recognisable is left after `redact` (for `kind == "path"`, `redact_path`).
`planted_secrets_heldout.json` was never looked at while the rules were
written: its figure is the one that says how the rules generalise. False
positives: the share of lines of the given code (the `*.py` files of each
folder, with `--recursive` those below it too, test folders left out: the
standard library is a fair sample of ordinary code with few secrets) that
redaction changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lsp_server.repo.files import read_text
from lsp_server.repo.secrets import redact, redact_path


def leaked(secret: str, clean: str) -> bool:
    """True when the secret, or any of its lines of 16+ characters, is still in `clean`."""
    pieces = secret.replace("\\n", "\n").split("\n")
    return secret in clean or any(len(p) >= 16 and p in clean for p in pieces)


def recall(samples: list[dict[str, Any]]) -> tuple[float, list[dict[str, Any]]]:
    """(share of planted secrets removed, the samples that leaked)."""
    missed = []
    for s in samples:
        clean = redact_path(s["text"]) if s["kind"] == "path" else redact(s["text"], s["path"])[0]
        if leaked(s["secret"], clean):
            missed.append({**s, "clean": clean})
    return 1 - len(missed) / max(len(samples), 1), missed


def false_positives(files: list[Path]) -> dict[str, Any]:
    """Lines that `redact` changes in `files` (ordinary code: each is a false positive)."""
    lines = changed = 0
    examples: list[str] = []
    started = time.monotonic()
    for f in files:
        text, _ = read_text(f, 4 << 20)
        if text is None:
            continue
        clean, _ = redact(text, f.name)
        before, after = text.split("\n"), clean.split("\n")
        lines += len(before)
        for a, b in zip(before, after, strict=True):
            if a != b:
                changed += 1
                if len(examples) < 20:
                    examples.append(f"{f.name}: {a.strip()[:120]}")
    seconds = time.monotonic() - started
    return {
        "files": len(files),
        "lines": lines,
        "lines_changed": changed,
        "rate": changed / max(lines, 1),
        "seconds": round(seconds, 2),
        "examples": examples,
    }


TEST_FOLDERS = frozenset({"test", "tests", "idle_test", "site-packages", "dist-packages"})


def code_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The `*.py` files of `folder` (and below it with `recursive`, test folders left out)."""
    if not recursive:
        return sorted(folder.glob("*.py"))
    return [
        p
        for p in sorted(folder.rglob("*.py"))
        if not TEST_FOLDERS & set(p.relative_to(folder).parts[:-1])
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("planted", type=Path, nargs="+", help="JSON lists of planted secrets")
    parser.add_argument("--code", type=Path, action="append", default=[], help="folder of code")
    parser.add_argument("--recursive", action="store_true", help="also the code's subfolders")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"sets": {}}
    everything: list[dict[str, Any]] = []
    for file in args.planted:
        samples = json.loads(file.read_text())
        everything += samples
        share, missed = recall(samples)
        result["sets"][file.name] = {
            "planted": len(samples),
            "recall": round(share, 4),
            "missed": [{"kind": m["kind"], "text": m["text"][:100]} for m in missed],
        }
    result["planted"] = len(everything)
    result["recall"] = round(recall(everything)[0], 4)
    if args.code:
        files = [p for folder in args.code for p in code_files(folder, args.recursive)]
        result["false_positives"] = false_positives(files)
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
