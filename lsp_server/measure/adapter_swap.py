"""What an adapter swap costs, and what serving several adapters at once costs.

Two LoRA adapters for `--model` (rank 16 on every linear layer, as `finetune`
trains them, with random weights: speed does not depend on what they learned)
are written to a temporary folder. Then, in one run:

- `reload`: the swap before adapters stayed resident: load the base model with
  the new adapter merged, build its completer, warm it up (what the server did
  on every hot reload);
- `in_place`: the swap now: the new adapter loads onto the resident base model,
  the old one is dropped, the new one merged (`factory.resync`);
- `add_second`: a second adapter joins the first (the weights go unmerged);
- decode and prefill speed of the base model alone, with one adapter (merged, but
  unmerged over int4 weights, which take no merge) and with one of two unmerged
  adapters selected per request, on the same prompt, in `--dtype` (float32 unless
  told: `--dtype int4` is what the default model serves its general adapter in on a
  CPU with bf16; `--rounds 0` measures the speeds alone).

Usage:
    codetailor bench swap --model smollm2-135m --rounds 3
    codetailor bench swap --model smollm2-135m --rounds 0 --dtype int4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lsp_server.spec import AdapterRef, ModelSpec

PROMPT = Path(__file__).resolve().parents[1] / "completion" / "completer.py"


def say(message: str) -> None:
    """Progress on stderr (stdout holds the report)."""
    print(f"bench swap: {message}", file=sys.stderr, flush=True)


def make_adapters(model: str, out: Path) -> tuple[str, str]:
    """Two random all-linear rank-16 LoRA adapters for `model`, with their codetailor.json."""
    import torch
    from peft import LoraConfig, get_peft_model

    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import choose_format

    folders = []
    for seed in (0, 1):
        base = load_model(model, device="cpu", dtype="float32")
        meta = {
            "base_model": {"name": base.name, "fingerprint": base.fingerprint},
            "prompt_format": choose_format(base).name,
        }
        config = LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")
        peft_model = get_peft_model(base.model, config)
        torch.manual_seed(seed)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.02)
        folder = out / f"adapter-{seed}"
        peft_model.save_pretrained(str(folder))
        (folder / "codetailor.json").write_text(json.dumps(meta))
        folders.append(str(folder))
    return folders[0], folders[1]


def seconds(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def swaps(model: str, one: str, two: str, rounds: int) -> dict[str, list[float]]:
    """Times of each kind of swap, `rounds` of each, alternating the two adapters."""
    from lsp_server.model.factory import load_completers, resync
    from lsp_server.model.host import warm_up

    spec = ModelSpec(model=model, device="cpu", dtype="float32")
    first, second = AdapterRef(one), AdapterRef(two)

    def reload(adapter: AdapterRef) -> None:
        warm_up(load_completers(ModelSpec(model=model, device="cpu"), [adapter]).completer)

    times: dict[str, list[float]] = {"reload": [], "in_place": [], "add_second": []}
    loaded = load_completers(spec, [first])
    warm_up(loaded.completer)
    for i in range(rounds):
        say(f"swap round {i + 1} of {rounds}")
        new = second if i % 2 == 0 else first
        times["reload"].append(seconds(lambda: reload(new)))  # noqa: B023 - run at once

        def swap(adapters: list[AdapterRef | None]) -> None:
            nonlocal loaded
            loaded = resync(loaded, spec, adapters)

        other = first if new == second else second
        times["in_place"].append(seconds(lambda: swap([new])))  # noqa: B023
        times["add_second"].append(seconds(lambda: swap([new, other])))  # noqa: B023
        swap([new])
    return times


def decode_speed(
    model: str, one: str, two: str, tokens: int, dtype: str = "float32", repeat: int = 1
) -> dict[str, dict[str, Any]]:
    """Prefill and decode ms per token: the base model, one adapter (merged where `dtype`
    takes a merge), one of two unmerged; the median of `repeat` runs after a warm-up."""
    from lsp_server.model.factory import load_completers

    text = PROMPT.read_text()[:3000]
    spec = ModelSpec(model=model, device="cpu", dtype=dtype)
    first = AdapterRef(one)
    result = {}
    rows: tuple[tuple[str, list[AdapterRef | None]], ...] = (
        ("base", [None]),
        ("merged", [first]),
        ("unmerged", [first, AdapterRef(two)]),
    )
    for name, wanted in rows:
        say(f"prefill and decode, {name}")
        loaded = load_completers(spec, wanted)
        completer = loaded.completers[wanted[0]]
        ids = completer.prompt_ids(text, len(text))
        runs = []
        for _ in range(1 + repeat):  # the first warms up
            loaded.engine(wanted[0]).cache.clear()
            runs.append(completer.engine.generate(ids, max_new_tokens=tokens))
        timed = runs[1:]
        prefill = statistics.median(r.prefill_ms / max(r.prompt_tokens, 1) for r in timed)
        decode = statistics.median(r.decode_ms / max(len(r.tokens) - 1, 1) for r in timed)
        result[name] = {
            "mode": loaded.mode,
            "prefill_ms_per_token": round(prefill, 2),
            "decode_ms_per_token": round(decode, 2),
            "prompt_tokens": timed[0].prompt_tokens,
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench swap",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", default=None, help="the base model (default: smollm2-135m)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=24, help="tokens decoded per run")
    parser.add_argument("--dtype", default="float32", help="of the speed runs (swaps: float32)")
    parser.add_argument("--repeat", type=int, default=1, help="speed runs per row (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="codetailor-swap-") as tmp:
        say("making two adapters")
        one, two = make_adapters(args.model, Path(tmp))
        times = swaps(args.model, one, two, args.rounds) if args.rounds > 0 else {}
        speed = decode_speed(args.model, one, two, args.tokens, args.dtype, args.repeat)
    p50 = {k: round(statistics.median(v), 3) for k, v in times.items()}
    decode = {k: v["decode_ms_per_token"] for k, v in speed.items()}
    report = {
        "model": args.model,
        "dtype": args.dtype,
        "swap_seconds_p50": p50,
        "swap_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "reload/in_place": round(p50["reload"] / p50["in_place"], 1) if p50 else None,
        "speed": speed,
        "unmerged/merged_decode": round(decode["unmerged"] / decode["merged"], 2),
        "one_adapter/base_decode": round(decode["merged"] / decode["base"], 2),
    }
    print(json.dumps(report, indent=2))
    return 0
