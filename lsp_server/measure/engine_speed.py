"""Engine speed on one machine, in one run: load times, prefill and decode rates, and the
speed-up of a warm request (KV prefix reused) over a cold one.

    codetailor bench engine [--model smollm2-135m] [--dtype int8] [--file F] [--fresh-home]

`--fresh-home` converts the GGUF in a temporary CODETAILOR_HOME, so the first
load includes the one-time dequantization. Prints a JSON object and a markdown
table. Absolute times are noisy on shared machines; the ratios are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--file", type=Path, default=Path(json.__file__).with_name("decoder.py"))
    parser.add_argument("--fresh-home", action="store_true", help="measure the first conversion")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, int8 (CPU)")
    args = parser.parse_args(argv)
    if args.fresh_home:
        os.environ["CODETAILOR_HOME"] = tempfile.mkdtemp(prefix="codetailor-bench-")

    from lsp_server.model.factory import load_completers
    from lsp_server.spec import ModelSpec

    spec = ModelSpec(model=args.model, dtype=args.dtype)
    t = time.monotonic()
    load_completers(spec)
    first_load = time.monotonic() - t
    t = time.monotonic()
    held = load_completers(spec)
    second_load = time.monotonic() - t

    loaded, completer = held.model, held.completer
    engine = held.engine()  # the local engine over token ids
    text = args.file.read_text()
    # A cursor two thirds into the file, in the middle of a line.
    line_start = text.rfind("\n", 0, len(text) * 2 // 3) + 1
    offset = line_start + len(text[line_start:].split("\n", 1)[0]) // 2

    prompt_ids = loaded.tokenizer.encode(completer.prompt_for(text[:offset], text[offset:]))
    prefill_rates, decode_ms = rates(engine, prompt_ids, args.repeats)
    verify_cost = verify_over_step(engine.backend, prompt_ids, args.repeats)
    scoring = scoring_cost(engine.backend, prompt_ids, max(args.repeats, 20))

    runs = requests(engine, completer, text, offset, args.repeats)
    p50 = statistics.median
    result: dict[str, Any] = {
        "model": loaded.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
        "file": str(args.file),
        "prompt_tokens": len(prompt_ids),
        "load_first_s": round(first_load, 2),
        "load_second_s": round(second_load, 2),
        "prefill_tokens_per_s": round(p50(prefill_rates), 1),
        "decode_ms_per_token": round(p50(decode_ms), 1),
        "verify_9_tokens_over_one_step": round(verify_cost, 2),
    } | scoring
    print_report(result | request_times(runs))
    return 0


def requests(
    engine: Any, completer: Any, text: str, offset: int, repeats: int
) -> dict[str, list[Any]]:
    """Each request's generation, `repeats` times: cold (an empty cache), the same again
    (warm), and after the user typed three more characters (warm, one step on)."""
    runs: dict[str, list[Any]] = {"cold": [], "warm_same": [], "warm_typed": []}
    edited = text[:offset] + "abc" + text[offset:]
    for _ in range(repeats):
        engine.cache.clear()
        runs["cold"].append(completer.complete(text, offset, max_tokens=16).generation)
        runs["warm_same"].append(completer.complete(text, offset, max_tokens=16).generation)
        runs["warm_typed"].append(completer.complete(edited, offset + 3, max_tokens=16).generation)
    return runs


def rates(engine: Any, prompt_ids: list[int], repeats: int) -> tuple[list[float], list[float]]:
    """Prefill tokens per second and decode ms per token, `repeats` times, cold each time."""
    prefill_rates, decode_ms = [], []
    for _ in range(repeats):
        engine.cache.clear()
        g = engine.generate(prompt_ids, max_new_tokens=1)
        prefill_rates.append(g.prompt_tokens / (g.prefill_ms / 1000))
        engine.cache.clear()
        g = engine.generate(prompt_ids, max_new_tokens=33)
        decode_ms.append(g.decode_ms / max(g.generated_tokens - 1, 1))
    return prefill_rates, decode_ms


def request_times(runs: dict[str, list[Any]]) -> dict[str, Any]:
    """Per kind of request (cold, warm), its p50 times and reuse, and the warm speed-ups."""
    p50 = statistics.median
    result: dict[str, Any] = {}
    for name, gens in runs.items():
        result[f"{name}_p50_ms"] = round(p50(g.latency_ms for g in gens), 1)
        result[f"{name}_prefill_p50_ms"] = round(p50(g.prefill_ms for g in gens), 1)
        result[f"{name}_cached_tokens"] = gens[0].cached_tokens
        result[f"{name}_tokens_per_forward"] = round(p50(g.tokens_per_forward for g in gens), 2)
    for name in ("warm_same", "warm_typed"):
        result[f"speedup_{name}"] = round(result["cold_p50_ms"] / result[f"{name}_p50_ms"], 2)
        result[f"prefill_speedup_{name}"] = round(
            result["cold_prefill_p50_ms"] / max(result[f"{name}_prefill_p50_ms"], 0.1), 1
        )
    return result


def print_report(result: dict[str, Any]) -> None:
    print(json.dumps(result, indent=2))
    print("\n| measure | value |\n|---|---|", file=sys.stdout)
    for key, value in result.items():
        print(f"| {key} | {value} |")


def verify_over_step(backend: Any, prompt_ids: list[int], repeats: int) -> float:
    """How much one forward verifying 8 drafted tokens costs against a one-token step."""
    cache = backend.new_cache()
    backend.forward(cache, prompt_ids)
    steps, verifies = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        backend.forward(cache, prompt_ids[-1:])
        steps.append(time.perf_counter() - t)
        backend.crop(cache, len(prompt_ids))
        t = time.perf_counter()
        backend.verify(cache, prompt_ids[-9:])
        verifies.append(time.perf_counter() - t)
        backend.crop(cache, len(prompt_ids))
    return statistics.median(verifies) / statistics.median(steps)


if __name__ == "__main__":
    sys.exit(main())


def scoring_cost(backend: Any, prompt_ids: list[int], repeats: int) -> dict[str, float]:
    """What scoring the chosen tokens (`Generation.logprobs`, `.entropies`) costs: a decode
    step (one token) and a verify (nine) with scores over the same without, alternated."""
    cache = backend.new_cache()
    backend.forward(cache, prompt_ids)
    times: dict[tuple[int, bool], list[float]] = {}
    for _ in range(repeats):
        for width in (1, 9):
            for scored in (False, True):
                t = time.perf_counter()
                backend.verify(cache, prompt_ids[-width:], scores=[] if scored else None)
                times.setdefault((width, scored), []).append(time.perf_counter() - t)
                backend.crop(cache, len(prompt_ids))
    p50 = statistics.median
    return {
        "step_ms_unscored": round(p50(times[1, False]) * 1000, 2),
        "step_ms_scored": round(p50(times[1, True]) * 1000, 2),
        "scored_over_unscored_step": round(p50(times[1, True]) / p50(times[1, False]), 3),
        "scored_over_unscored_verify_9": round(p50(times[9, True]) / p50(times[9, False]), 3),
    }
