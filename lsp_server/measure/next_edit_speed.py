"""Next-edit latency beside a completion's, on one model, in one run.

    codetailor bench nextedit [--model smollm2-135m] [--file F] [--places 12] [--json]

At each of `--places` lines of FILE (default: the standard library's
json/decoder.py) a simulated user renames one identifier on that line (the edit
history then holds it), then asks for the next edit at the cursor and for a
completion there, in alternating order, on the same engine and KV cache. Reports
p50/p95 latency of each, the next edit's prompt and generated tokens and its
tokens per forward (generated tokens / model calls: the gain of drafting the
window from itself), and how many places got an edit. Absolute times on a shared
machine are noisy; the two are measured side by side for that reason.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from lsp_server.completion.next_edit import NextEditRequest, RecentEdit
from lsp_server.completion.next_edit_text import edit_window
from lsp_server.session.edit_history import EditHistory

IDENTIFIER = re.compile(r"\b([a-z_][a-z0-9_]{2,})\b")


def places(text: str, count: int) -> list[tuple[int, str, str]]:
    """(line, identifier, new name) at `count` lines spread over the text: an identifier
    (no keyword) that appears again within the next five lines, so that renaming it on
    this line implies the next edit a few lines below."""
    lines = text.split("\n")
    found = []
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("#", '"', "'")) or not re.search(r"[=(\[]", line):
            continue
        below = "\n".join(lines[i + 1 : i + 6])
        for m in IDENTIFIER.finditer(line):
            name = m.group(1)
            if not keyword.iskeyword(name) and re.search(rf"\b{name}\b", below):
                found.append((i, name))
                break
    step = max(len(found) // max(count, 1), 1)
    return [(i, name, f"{name}_v2") for i, name in found[::step][:count]]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(int(q * len(ordered)), len(ordered) - 1)] if ordered else 0.0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load `args.model` and measure it (`measure`)."""
    from lsp_server.model.factory import load_completers
    from lsp_server.spec import ModelSpec

    return measure(args, load_completers(ModelSpec(model=args.model, dtype=args.dtype or "auto")))


def measure(args: argparse.Namespace, held: Any) -> dict[str, Any]:
    """The run over a model already loaded (`held`, a factory `Loaded`): `args` gives the
    file, the places, the window, the completion's tokens and the next edit's budget."""
    from lsp_server.model.next_edit import next_edit_predictor

    loaded, completer = held.model, held.completer
    predictor = next_edit_predictor(completer)
    if args.window_lines:
        predictor.window_lines = args.window_lines
    text = args.file.read_text()
    completer.complete(text[:200], 200, max_tokens=2)  # warm-up: first-call costs
    edits: list[dict[str, Any]] = []
    completions: list[float] = []
    for n, (line, name, new) in enumerate(places(text, args.places)):
        history = EditHistory()
        history.opened("f", text)
        start = sum(len(x) + 1 for x in text.split("\n")[:line])
        end = text.index("\n", start)
        edited = text[:start] + text[start:end].replace(name, new, 1) + text[end:]
        history.changed("f", text, edited)
        cursor = start + text[start:end].index(name) + len(new)
        window = edit_window(text, edited, cursor, predictor.window_lines)
        recent = tuple(RecentEdit(args.file.name, e.before, e.after) for e in history.recent("f"))
        request = NextEditRequest(args.file.name, recent, window)
        order = ("edit", "completion") if n % 2 == 0 else ("completion", "edit")
        for what in order:
            started = time.perf_counter()
            if what == "edit":
                answer = predictor.predict(request, time_budget=args.budget_s)
                edits.append(_edit_row(answer, (time.perf_counter() - started) * 1000))
            else:
                completer.complete(edited, cursor, max_tokens=args.max_tokens)
                completions.append((time.perf_counter() - started) * 1000)
        print(f"place {n + 1}: {edits[-1]}", file=sys.stderr)
    return summary(args, loaded, predictor, edits, completions)


def _edit_row(answer: Any, ms: float) -> dict[str, Any]:
    return {
        "ms": round(ms, 1),
        "edit": answer.edit is not None,
        "stop": answer.stop_reason,
        "prefill_ms": round(answer.prefill_ms, 1),
        "prompt_tokens": answer.prompt_tokens,
        "cached_tokens": answer.cached_tokens,
        "generated_tokens": answer.generated_tokens,
        "forwards": answer.forwards,
    }


def summary(
    args: argparse.Namespace,
    loaded: Any,
    predictor: Any,
    edits: list[dict[str, Any]],
    completions: list[float],
) -> dict[str, Any]:
    ms = [e["ms"] for e in edits]
    generated, forwards = (
        sum(e["generated_tokens"] for e in edits),
        sum(e["forwards"] for e in edits),
    )
    return {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "file": str(args.file),
        "places": len(edits),
        "window_lines": predictor.window_lines,
        "next_edit": {
            "p50_ms": round(statistics.median(ms), 1) if ms else None,
            "p95_ms": round(percentile(ms, 0.95), 1),
            "prompt_tokens_p50": statistics.median(e["prompt_tokens"] for e in edits),
            "prefill_ms_p50": statistics.median(e["prefill_ms"] for e in edits),
            "prefill_tokens_per_s": _rate(edits),
            "generated_tokens_p50": statistics.median(e["generated_tokens"] for e in edits),
            "tokens_per_forward": round(generated / forwards, 2) if forwards else None,
            "edits_offered": sum(e["edit"] for e in edits),
            "stop_reasons": dict(sorted(_count(e["stop"] for e in edits).items())),
        },
        "completion": {
            "p50_ms": round(statistics.median(completions), 1) if completions else None,
            "p95_ms": round(percentile(completions, 0.95), 1),
            "max_tokens": args.max_tokens,
        },
        "rows": edits,
    }


def _rate(edits: list[dict[str, Any]]) -> float | None:
    """Prefill speed over the run: prompt tokens computed (not cached) per second."""
    tokens = sum(e["prompt_tokens"] - e["cached_tokens"] for e in edits)
    seconds = sum(e["prefill_ms"] for e in edits) / 1000
    return round(tokens / seconds, 1) if seconds else None


def _count(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench nextedit",
        description="Next-edit latency beside a completion's, on one model, in one run: at "
        "each of --places lines of FILE a simulated user renames an identifier, then asks "
        "for the next edit and for a completion there, on the same engine and KV cache.",
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--file", type=Path, default=Path(json.__file__).with_name("decoder.py"))
    parser.add_argument("--places", type=int, default=12)
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-tokens", type=int, default=16, help="most tokens per completion")
    parser.add_argument("--window-lines", type=int, default=0, help="0: the predictor's own")
    parser.add_argument("--budget-s", type=float, default=None, help="next edit time budget")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    report = run(args)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        public = {k: v for k, v in report.items() if k != "rows"}
        print(json.dumps(public, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
