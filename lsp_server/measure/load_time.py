"""Load to ready, stage by stage, in fresh processes: where a server's start goes.

    codetailor bench load [--model smollm2-135m] [--repeats 3] [--against DIR] [--json]

Each run is a new Python process that loads the model as `serve` does (the model
factory, then the host's warm-up generation) and reports how long each stage
took: the interpreter's start, importing torch and transformers, the GGUF
conversion, reading the weights (transformers' lazy imports included), packing
them in 4 bits (int4), the loader's other work (resolving the spec, the
completers), the warm-up generation.
In a temporary CODETAILOR_HOME, one after the other:

- `cold`: nothing converted yet (the one-time GGUF conversion included);
- `warm, packing`: converted, but no packed 4-bit weights kept (the first start
  after a torch upgrade, say);
- `warm`: what every later start does.

The warm runs alternate, `--repeats` times each, and each stage's median is
shown. `--against DIR` runs the same in another checkout of Codetailor (e.g. a
`git worktree` of an older commit), interleaved with this one, so before and
after are compared under the same load. Absolute times on a shared machine are
noisy; the ratios inside one run are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

STAGES = ("start", "imports", "convert", "weights", "int4", "other", "warm_up")

# What a run executes, in its own process. It times the loader's functions by
# wrapping them, so it measures an older checkout the same way (`--against`):
# where a function does not exist there, that stage is counted in the next one.
CHILD = r"""
import json, sys, time
entered = time.time()
mark = time.monotonic()
stages = {}
def stage(name):
    global mark
    now = time.monotonic()
    stages[name] = stages.get(name, 0.0) + now - mark
    mark = now
def timed(module, name, label):
    inner = getattr(module, name, None)
    if inner is None:
        return
    def wrapper(*args, **kwargs):
        stage("other")  # the loader's own work since the last stage
        try:
            return inner(*args, **kwargs)
        finally:
            stage(label)
    setattr(module, name, wrapper)
import torch, transformers
from transformers import AutoModelForCausalLM, AutoTokenizer
stage("imports")
from lsp_server.model import factory, host, int4, loading
try:
    from lsp_server.model import int4_cache
except ImportError:
    int4_cache = None
from lsp_server.spec import ModelSpec
timed(loading, "ensure_converted", "convert")
timed(loading, "gguf_is_q4_1", "convert")
timed(loading, "_load_weights", "weights")
if int4_cache is not None:
    timed(int4_cache, "quantize_cached", "int4")
else:
    timed(int4, "quantize_int4", "int4")
stages["other"] = 0.0
mark = time.monotonic()
loaded = factory.load_completers(ModelSpec(model=sys.argv[1], dtype=sys.argv[2]))
stage("other")
host.warm_up(loaded.completer)
stage("warm_up")
print(json.dumps({"entered": entered, "ready": time.time(), "stages": stages}), flush=True)
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default="smollm2-135m", help="model spec (default: %(default)s)")
    parser.add_argument("--dtype", default="auto", help="as `serve --dtype` (default: auto)")
    parser.add_argument("--repeats", type=int, default=3, help="warm runs of each kind")
    parser.add_argument(
        "--against", type=Path, help="another checkout to compare with, run interleaved"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)
    here = Path(__file__).resolve().parents[2]
    trees = {"this": here} | ({"against": args.against.resolve()} if args.against else {})
    runs: dict[str, list[dict[str, float]]] = {}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(prefix="codetailor-bench-load-") as scratch:
        homes = {name: Path(scratch) / name for name in trees}
        plan = [(name, "cold") for name in trees]
        for _ in range(args.repeats):
            plan += [(name, kind) for name in trees for kind in ("warm, packing", "warm")]
        for number, (name, kind) in enumerate(plan, 1):
            if kind == "warm, packing":
                forget_packed(homes[name])
            print(f"run {number}/{len(plan)}: {name}, {kind}", file=sys.stderr, flush=True)
            stages = run_once(trees[name], homes[name], args.model, args.dtype)
            runs.setdefault(f"{name}: {kind}", []).append(stages)
            loads.append(os.getloadavg()[0])
    result = summary(runs, loads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_summary(result)
    return 0


def forget_packed(home: Path) -> None:
    """Remove the packed 4-bit weights kept in `home` (the converted weights stay)."""
    for path in home.glob("models/*/codetailor-int4.safetensors"):
        path.unlink()
    shutil.rmtree(home / "int4", ignore_errors=True)


def run_once(tree: Path, home: Path, model: str, dtype: str) -> dict[str, float]:
    """One fresh process loading `model` from the code in `tree`: seconds per stage."""
    env = os.environ | {"CODETAILOR_HOME": str(home), "PYTHONPATH": str(tree)}
    started = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, model, dtype],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"codetailor: error: a load in {tree} failed: {tail}")
    report = json.loads(lines[-1])
    stages = {"start": report["entered"] - started} | report["stages"]
    return {name: stages.get(name, 0.0) for name in STAGES} | {"ready": report["ready"] - started}


def summary(runs: dict[str, list[dict[str, float]]], loads: list[float]) -> dict[str, Any]:
    """Each kind of run's median seconds per stage, and the load average it ran under."""
    medians = {
        kind: {k: round(statistics.median(r[k] for r in rs), 3) for k in (*STAGES, "ready")}
        | {"runs": len(rs)}
        for kind, rs in runs.items()
    }
    return {
        "runs": medians,
        "load_average": {"min": round(min(loads), 2), "max": round(max(loads), 2)},
    }


def print_summary(result: dict[str, Any]) -> None:
    from lsp_server.measure.tables import print_table

    kinds = list(result["runs"])
    rows = [
        [stage, *(result["runs"][kind][stage] for kind in kinds)] for stage in (*STAGES, "ready")
    ]
    load = result["load_average"]
    print_table(
        ["seconds (median)", *kinds],
        rows,
        title="load to ready, by stage",
        caption=f"load average {load['min']}-{load['max']} during the runs",
    )


if __name__ == "__main__":
    sys.exit(main())
