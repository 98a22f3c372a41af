"""`codetailor bench gpu`: a GPU's figures in one command, in at most 8 minutes, no download.

On one CUDA GPU it runs five parts (gpu_parts.py), each within its own time
budget (`BUDGETS_S`, 450 s together, leaving room for start-up): the default
model's time to first token on a cold and a warm KV cache, decode tokens/s and
tokens per forward, the same for a randomly initialised model of
Qwen2.5-Coder-1.5B's shape, the compiled decode's greedy identity against eager
decoding in bf16, next-edit latency, and LoRA training tokens/s of our trainer
against Hugging Face's Trainer + PEFT on the same batches; with each part, the
peak GPU memory it allocated (`torch.cuda.max_memory_allocated`, reset between
parts). A part that fails or outlasts its budget is reported as failed with its
one-line reason, and the others still run.

Without CUDA (or with `--tiny`) the same parts run with tiny models built in code
(`TINY` sizes), on the CPU in seconds: the smoke run CI keeps alive. It writes
one JSON file (`--out`) and prints a table (or, with `--json`, the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lsp_server.measure import gpu_parts
from lsp_server.measure.gpu_parts import Bench, first_line, free_memory

log = logging.getLogger("codetailor.bench")

Part = Callable[[Bench], dict[str, Any]]

# The parts in the order they run: the three on the default model first, which is then
# let go before the larger random model is built.
PARTS: dict[str, Part] = {
    "default_model": gpu_parts.default_model,
    "compiled_identity": gpu_parts.compiled_identity,
    "next_edit": gpu_parts.next_edit,
    "qwen_shape": gpu_parts.qwen_shape,
    "lora_training": gpu_parts.lora_training,
}
ON_DEFAULT_MODEL = ("default_model", "compiled_identity", "next_edit")
# Seconds per part on a GPU: a first run converts the default model's GGUF file (about
# 20-40 s) and compiles its decode steps; the random model compiles its own.
BUDGETS_S: dict[str, float] = {
    "default_model": 150,
    "compiled_identity": 40,
    "next_edit": 50,
    "qwen_shape": 130,
    "lora_training": 80,
}
TINY_BUDGET_S = 120.0  # per part in a smoke run: tiny work, but on a loaded CI machine


class OverBudget(BaseException):
    """A part ran past its time budget (a BaseException: no library's `except Exception`
    may swallow it on the way out)."""


def run_bench(
    *, tiny: bool = False, model: str | None = None, file: Path, only: Sequence[str] = ()
) -> dict[str, Any]:
    """Run the parts (`only` those named, else all) and return the report."""
    import torch
    import transformers

    cuda = torch.cuda.is_available()
    tiny = tiny or not cuda
    names = [n for n in PARTS if not only or n in only]
    bench = Bench(
        device="cuda" if cuda else "cpu",
        tiny=tiny,
        model=model or _default_spec(tiny, names),
        file=file,
        sizes=gpu_parts.TINY if tiny else gpu_parts.FULL,
    )
    started, stamp = time.monotonic(), datetime.now(timezone.utc).isoformat(timespec="seconds")
    parts: dict[str, Any] = {}
    for name in names:
        budget = TINY_BUDGET_S if tiny else BUDGETS_S[name]
        print(f"bench gpu: {name} (budget {budget:g} s) ...", file=sys.stderr, flush=True)
        parts[name] = run_part(PARTS[name], bench, budget)
        print(f"bench gpu: {name} {_outcome(parts[name])}", file=sys.stderr, flush=True)
        if not any(n in ON_DEFAULT_MODEL for n in names[names.index(name) + 1 :]):
            bench.release()
    return {
        "command": "codetailor bench gpu" + (" --tiny" if tiny else ""),
        "tiny": tiny,
        "device": bench.device,
        "gpu": torch.cuda.get_device_name() if cuda else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "started": stamp,
        "seconds": round(time.monotonic() - started, 1),
        "parts": parts,
    }


def _default_spec(tiny: bool, names: Sequence[str]) -> str:
    """The default model's spec: the real one, or in a smoke run a tiny Llama built now
    (only when a part on the default model runs)."""
    from lsp_server.model.loading import DEFAULT_MODEL

    if not tiny or not any(n in ON_DEFAULT_MODEL for n in names):
        return DEFAULT_MODEL
    from lsp_server.measure.tiny_model import build_tiny_model_quietly

    return str(build_tiny_model_quietly())


def run_part(part: Part, bench: Bench, budget: float) -> dict[str, Any]:
    """One part within `budget` seconds: its figures, or its failure in one line; with
    the seconds it took and the peak GPU memory it allocated (None on a CPU)."""
    import torch

    cuda = torch.cuda.is_available()
    free_memory()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.monotonic()
    bench.deadline = started + budget
    row: dict[str, Any] = {"status": "ok"}
    try:
        with time_limit(budget):
            figures = part(bench)
        row |= figures
    except OverBudget as exc:
        row = {"status": "failed", "reason": str(exc)}
    except Exception as exc:  # noqa: BLE001 - a failed part is reported; the others run
        log.debug("part failed", exc_info=True)
        row = {"status": "failed", "reason": first_line(exc)}
    peak = round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None
    peak = row.pop("peak_gpu_memory_mb", peak)  # a part run in a process of its own says it
    figures_first = {k: v for k, v in row.items() if k not in ("status", "reason")}
    return {
        "status": row["status"],
        **({"reason": row["reason"]} if "reason" in row else {}),
        "seconds": round(time.monotonic() - started, 1),
        "budget_s": budget,
        "peak_gpu_memory_mb": peak,
        **figures_first,
    }


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise OverBudget in this thread after `seconds` (a timer signal; where there is none,
    or off the main thread, the part runs unbounded and its deadline alone guides it)."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise OverBudget(f"over its budget of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    started = time.monotonic()
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:  # someone else's timer was running: it goes on with what it had left
            left = outer - (time.monotonic() - started)
            signal.setitimer(signal.ITIMER_REAL, max(left, 0.001))


def _outcome(row: dict[str, Any]) -> str:
    if row["status"] == "ok":
        return f"ok in {row['seconds']} s"
    return f"FAILED in {row['seconds']} s: {row['reason']}"


def print_report(report: dict[str, Any]) -> None:
    """The report as one table: a part's rows, its status first, then its figures."""
    from lsp_server.measure.tables import flatten, print_table

    rows: list[tuple[str, str, Any]] = []
    for name, part in report["parts"].items():
        for i, (key, value) in enumerate(flatten(part)):
            rows.append((name if i == 0 else "", key, value))
    where = report["gpu"] or "the CPU, tiny sizes (a smoke run)"
    print_table(
        ("part", "figure", "value"),
        rows,
        title=f"codetailor bench gpu on {where}: {report['seconds']} s",
    )


def add_gpu(kinds: argparse._SubParsersAction) -> None:
    """`codetailor bench gpu` and its options."""
    import json as json_module

    gpu = kinds.add_parser(
        "gpu",
        help="a GPU's figures in one command: speed, compiled identity, LoRA training, memory",
        description="On one CUDA GPU, in at most 8 minutes and with no download: time to "
        "first token (cold and warm KV cache), decode tokens/s and tokens per forward for "
        "the default model and a randomly initialised model of Qwen2.5-Coder-1.5B's shape, "
        "the compiled decode's greedy identity against eager in bf16, next-edit latency, "
        "LoRA training tokens/s of our trainer against Hugging Face's Trainer + PEFT, and "
        "each part's peak GPU memory. Without CUDA the same parts run on tiny models on the "
        "CPU (a smoke run). A part that fails is reported with its reason; the others run.",
        epilog="example: codetailor bench gpu --out bench-out/gpu.json",
    )
    gpu.add_argument("--tiny", action="store_true", help="tiny models (automatic without CUDA)")
    gpu.add_argument(
        "--only",
        action="append",
        choices=list(PARTS),
        metavar="PART",
        help=f"run only this part (repeatable): {', '.join(PARTS)}",
    )
    gpu.add_argument(
        "--model", default=None, help="the default model's spec (default smollm2-135m)"
    )
    gpu.add_argument(
        "--file",
        type=Path,
        default=Path(json_module.__file__).with_name("decoder.py"),
        help="the source file the prompts come from (default: the standard library's "
        "json/decoder.py)",
    )
    gpu.add_argument(
        "--out", type=Path, default=Path("bench-gpu.json"), help="the JSON file to write"
    )
    gpu.add_argument("--json", action="store_true", help="print the JSON instead of the table")
    gpu.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    gpu.set_defaults(func=cmd_bench_gpu)


def cmd_bench_gpu(args: argparse.Namespace) -> int:
    """Run the bench, write the JSON file, print the table (or the JSON)."""
    import json

    from lsp_server.repo.files import read_source

    read_source(args.file)  # one clear line for a missing, binary or non-UTF-8 file
    report = run_bench(tiny=args.tiny, model=args.model, file=args.file, only=args.only or ())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0
