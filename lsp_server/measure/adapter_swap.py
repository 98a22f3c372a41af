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
- decode and prefill speed with one adapter merged against one of two unmerged
  adapters selected per request, on the same prompt.

Usage:
    codetailor bench swap --model smollm2-135m --rounds 3
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


def decode_speed(model: str, one: str, two: str, tokens: int) -> dict[str, dict[str, float]]:
    """Prefill and decode ms per token, one adapter merged against two unmerged."""
    from lsp_server.model.factory import load_completers

    text = PROMPT.read_text()[:3000]
    spec = ModelSpec(model=model, device="cpu", dtype="float32")
    result = {}
    for name, wanted in (("merged", [one]), ("unmerged", [one, two])):
        say(f"prefill and decode, {name}")
        loaded = load_completers(spec, [AdapterRef(a) for a in wanted])
        completer = loaded.completers[AdapterRef(one)]
        ids = completer.prompt_ids(text, len(text))
        runs = []
        for _ in range(2):  # the first warms up
            loaded.engine(AdapterRef(one)).cache.clear()
            runs.append(completer.engine.generate(ids, max_new_tokens=tokens))
        run = runs[-1]
        result[name] = {
            "prefill_ms_per_token": round(run.prefill_ms / max(run.prompt_tokens, 1), 2),
            "decode_ms_per_token": round(run.decode_ms / max(len(run.tokens) - 1, 1), 2),
            "prompt_tokens": run.prompt_tokens,
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
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="codetailor-swap-") as tmp:
        say("making two adapters")
        one, two = make_adapters(args.model, Path(tmp))
        times = swaps(args.model, one, two, args.rounds)
        speed = decode_speed(args.model, one, two, args.tokens)
    p50 = {k: round(statistics.median(v), 3) for k, v in times.items()}
    report = {
        "model": args.model,
        "swap_seconds_p50": p50,
        "swap_seconds": {k: [round(x, 3) for x in v] for k, v in times.items()},
        "reload/in_place": round(p50["reload"] / p50["in_place"], 1),
        "speed": speed,
        "unmerged/merged_decode": round(
            speed["unmerged"]["decode_ms_per_token"] / speed["merged"]["decode_ms_per_token"], 2
        ),
    }
    print(json.dumps(report, indent=2))
    return 0
