"""What the LSP server adds to a completion: round trip minus the engine's own time.

Starts `codetailor serve` on stdio, opens a source file, and asks for inline
completions at the ends of N different lines (different lines, so typing-through
never answers from memory). After each answer it reads `codetailor.status`,
whose `lastGeneration` holds the engine's `latency_ms` (prefill + decode) and
`complete_ms` (that plus prompt building and tokenization) for that request.

    overhead = client round trip - latency_ms        (what the issue asks for)
    lsp      = client round trip - complete_ms       (JSON-RPC, pipes, event loop, thread hop)

Usage:
    codetailor bench overhead --model /path/to/tiny-model --requests 50
    codetailor bench overhead --model smollm2-135m --requests 50 --max-tokens 16
    codetailor bench overhead --tiny           # builds a tiny model first
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from lsp_server.measure.client import ServerProcess, serve_command
from lsp_server.measure.quality.metrics import percentile
from lsp_server.session.documents import LINE_BREAK, line_bounds

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FILE = REPO / "completion" / "completer.py"


async def run(model: str, source: Path, requests: int, max_tokens: int) -> dict:
    server = ServerProcess(serve_command(model), cwd=str(REPO))
    try:
        await server.start({"maxTokens": max_tokens, "multiline": "never"})
    except RuntimeError as exc:
        await server.stop()
        raise SystemExit(str(exc)) from None
    text = source.read_text()
    uri = source.resolve().as_uri()
    server.open(uri, text)
    rows = await _ask_at_line_ends(server, uri, text, requests)
    final = await server.status()
    await server.stop()

    def med(key: str) -> float:
        return round(percentile([r[key] for r in rows], 50), 2)

    overhead = [r["rtt_ms"] - r["engine_ms"] for r in rows]
    lsp = [r["rtt_ms"] - r["complete_ms"] for r in rows]
    return {
        "model": final["model"],
        "device": final["device"],
        "requests": len(rows),
        "max_tokens": max_tokens,
        "rtt_ms_p50": med("rtt_ms"),
        "engine_ms_p50": med("engine_ms"),
        "overhead_ms_p50": round(percentile(overhead, 50), 2),
        "overhead_ms_p90": round(percentile(overhead, 90), 2),
        "lsp_ms_p50": round(percentile(lsp, 50), 2),
        "prompt_ms_p50": round(
            percentile([r["complete_ms"] - r["engine_ms"] for r in rows], 50), 2
        ),
    }


async def _ask_at_line_ends(
    server: ServerProcess, uri: str, text: str, requests: int
) -> list[dict[str, float]]:
    """Ask at the ends of `requests` different non-blank lines; per request, the round trip
    and the engine's times (requests that typing-through answered are left out)."""
    candidates = [i for i, line in enumerate(LINE_BREAK.split(text)) if line.strip()]
    step = max(1, len(candidates) // requests)
    rows: list[dict[str, float]] = []
    for line in candidates[::step][:requests]:
        _, end = line_bounds(text, line) or (0, len(text))
        answer = await server.complete(uri, text, end, invoked=True)
        generation = (await server.status())["lastGeneration"]
        if rows and generation["request"] == rows[-1]["request"]:
            continue  # answered without the engine (typing-through): nothing to subtract
        rows.append(
            {
                "request": generation["request"],
                "rtt_ms": answer.elapsed_ms,
                "engine_ms": generation["latency_ms"],
                "complete_ms": generation["complete_ms"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench overhead",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="model spec (default: smollm2-135m)")
    parser.add_argument(
        "--tiny", action="store_true", help="build and use a tiny model (tiny_model.py)"
    )
    parser.add_argument(
        "--file", type=Path, default=DEFAULT_FILE, help="the document to complete in"
    )
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    model = args.model or "smollm2-135m"
    if args.tiny:
        from lsp_server.measure.tiny_model import build_tiny_model_quietly

        model = str(build_tiny_model_quietly())
    result = asyncio.run(run(model, args.file, args.requests, args.max_tokens))
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        print(f"{key:>16}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
