"""`codetailor eval`: completion quality through the same prompt path the server uses.

Registered with the `codetailor` command through the `codetailor.commands`
entry point group; heavy imports happen when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from lsp_server.errors import CodetailorError

BENCHMARKS = ("humaneval-line",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure completion quality (exact match, edit similarity, pass@1, latency)",
        description="Measure completion quality on a benchmark through the server's prompt path.",
        epilog="example: codetailor eval --benchmark humaneval-line --samples 100 --json",
    )
    p.add_argument("--benchmark", choices=BENCHMARKS, required=True, help="which task set")
    p.add_argument("--model", default=None, help="smollm2-135m (default), HF id, dir or .gguf")
    p.add_argument("--adapter", default=None, help="a LoRA adapter folder made by finetune")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--samples", type=int, default=None, help="tasks to sample (default: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same tasks")
    p.add_argument("--max-tokens", type=int, default=48, help="most tokens per completion")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--details", action="store_true", help="also print every task's result")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.samples is not None and args.samples < 1:
        raise CodetailorError("--samples must be at least 1")
    from tqdm import tqdm

    from finetune.quality.humaneval_eval import evaluate_humaneval_line
    from lsp_server.models import load_model
    from lsp_server.runtime import build_completer

    loaded = load_model(args.model, adapter=args.adapter, device=args.device, dtype=args.dtype)
    completer = build_completer(loaded)

    def complete(text: str, offset: int) -> tuple[str, float]:
        started = time.monotonic()
        result = completer.complete(text, offset, max_tokens=args.max_tokens, mode="line")
        return result.text, (time.monotonic() - started) * 1000

    with tqdm(
        total=args.samples or 1033, desc="humaneval-line", unit="task", file=sys.stderr
    ) as bar:
        summary, results = evaluate_humaneval_line(
            complete, samples=args.samples, seed=args.seed, progress=bar.update
        )
    summary |= {
        "model": loaded.name,
        "adapter": str(loaded.adapter.path) if loaded.adapter else None,
        "prompt_format": completer.format.name,
        "device": loaded.device,
    }
    _report(summary, [r.__dict__ for r in results] if args.details else None, args.json)
    return 0


def _report(summary: dict[str, Any], details: list[dict[str, Any]] | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary | ({"details": details} if details else {})))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        print(f"{key:<{width}}  {value}")
