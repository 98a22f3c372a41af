"""What the 4-bit model's float copies buy: `codetailor bench int4`.

    codetailor bench int4 [--model smollm2-135m] [--prompt-tokens 100,500,1500]
                          [--rounds 3] [--threads 1] [--json]

Under `--dtype int4` each 4-bit layer keeps its weight in bf16 too, for inputs
wider than `int4.ROWS` tokens (prefill), and the output projection keeps a
second, oneDNN-packed copy of its bf16 weight for decode steps (int4.py). This
bench loads the model as the server does and times, arms interleaved, what each
copy saves against the design that would drop it:

- prefill of prompts of each length, fed in the engine's chunks through the
  server's backend, with the wide inputs of the 4-bit layers multiplied
  `float` (as served: the bf16 copy), `dequantize` (no bf16 copy: before each
  product the layer's 4-bit weight is expanded into one bf16 buffer that every
  layer reuses, then one float product) or `kernel` (no bf16 copy: the 4-bit
  kernel on every width);
- decode steps over a prompt of the longest length, with the output projection
  `packed` (as served) or `plain` (the bf16 weight alone);
- forwards of 1 to `int4.ROWS` new tokens over that prompt (a decode step, a
  verification of drafts) through the lean step (as served, lean.py) and through
  the model's own forward: what each width costs, which chose the engine's
  drafts per forward for 4-bit weights (`int4.DRAFT_TOKENS`).

Times are this thread's CPU time with torch on `--threads` threads (default 1):
on a machine other processes load, wall times mostly measure the scheduler.
Each arm also reports the memory it holds beyond the 4-bit weights, and whether
its greedy next token after each prompt is the served arm's.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import MethodType
from typing import Any

import torch
from torch import nn

from lsp_server.model import int4

PREFILL_ARMS = ("float", "dequantize", "kernel")
DECODE_ARMS = ("packed", "plain")


class Dequantizer:
    """The `dequantize` arm: each 4-bit layer's integers as nibbles (two rows of the
    transposed weight to a byte: row k in the low half, row k + in/2 in the high half,
    so that both unpack into contiguous halves), expanded before each product into a
    bf16 buffer shared by every layer."""

    def __init__(self, layers: list[int4.Int4Linear]) -> None:
        self.nibbles: dict[int, torch.Tensor] = {}
        for layer in layers:
            levels, _ = int4.quantize_groups(layer.weight)  # what `pack` packed
            half = layer.in_features // 2
            rows = levels.t().to(torch.uint8)
            self.nibbles[id(layer)] = (rows[:half] | (rows[half:] << 4)).contiguous()
        largest = max(layer.in_features * layer.out_features for layer in layers)
        self.levels = torch.empty(largest, dtype=torch.uint8)
        self.weight = torch.empty(largest, dtype=layers[0].compute_dtype)

    def held_mb(self) -> float:
        """The nibbles and the two shared buffers, in MiB."""
        nibbles = sum(t.numel() for t in self.nibbles.values())
        buffers = self.levels.numel() + self.weight.numel() * self.weight.element_size()
        return (nibbles + buffers) / 2**20

    def transposed_weight(self, layer: int4.Int4Linear) -> torch.Tensor:
        """`layer`'s weight, transposed ((in, out)), from its 4 bits: (q - 8) * scale + zero
        per group, as the kernel computes it, rounded to the compute dtype."""
        inner, out = layer.in_features, layer.out_features
        groups, half = inner // layer.group, inner // 2
        nibbles = self.nibbles[id(layer)]
        levels = self.levels[: inner * out].view(inner, out)
        torch.bitwise_and(nibbles, 15, out=levels[:half])
        torch.bitwise_right_shift(nibbles, 4, out=levels[half:])
        scales_and_zeros = layer.packed_weight()[1].float()
        scale, zero = scales_and_zeros[..., 0], scales_and_zeros[..., 1]
        offset = (zero - 8 * scale).to(self.weight.dtype).unsqueeze(1)
        weight = self.weight[: inner * out].view(groups, layer.group, out)
        grouped = levels.view(groups, layer.group, out)
        torch.mul(grouped, scale.to(weight.dtype).unsqueeze(1), out=weight)
        return weight.add_(offset).view(inner, out)

    def forward(self, layer: int4.Int4Linear, x: torch.Tensor) -> torch.Tensor:
        x = x.to(layer.compute_dtype)
        rows = x.reshape(-1, layer.in_features)
        if rows.shape[0] > int4.ROWS:
            out = torch.matmul(x, self.transposed_weight(layer))
            return out if layer.bias is None else out + layer.bias
        return layer.narrow(rows).reshape(*x.shape[:-1], layer.out_features)


def kernel_forward(layer: int4.Int4Linear, x: torch.Tensor) -> torch.Tensor:
    """The `kernel` arm: the 4-bit kernel on every width."""
    rows = x.to(layer.compute_dtype).reshape(-1, layer.in_features)
    return layer.narrow(rows).reshape(*x.shape[:-1], layer.out_features)


@contextmanager
def prefill_arm(
    layers: list[int4.Int4Linear], arm: str, dequantizer: Dequantizer
) -> Iterator[None]:
    """The 4-bit layers multiply their wide inputs as `arm` says, inside the block."""
    forwards: dict[str, Callable[[int4.Int4Linear, torch.Tensor], torch.Tensor]] = {
        "dequantize": dequantizer.forward,
        "kernel": kernel_forward,
    }
    if arm != "float":
        for layer in layers:
            layer.forward = MethodType(forwards[arm], layer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def prefill_chunk() -> int:
    """The engine's prefill chunk (its default), in tokens."""
    from lsp_server.model.engine import Engine

    default = inspect.signature(Engine.__init__).parameters["prefill_chunk"].default
    assert isinstance(default, int)
    return default


def prefill(backend: Any, ids: list[int], chunk: int) -> tuple[float, int, Any]:
    """Feed `ids` in chunks as the engine does: (CPU ms, greedy next token, the cache)."""
    cache = backend.new_cache()
    started = time.thread_time()
    token = -1
    for start in range(0, len(ids), chunk):
        token = backend.forward(cache, ids[start : start + chunk])
    return (time.thread_time() - started) * 1000, token, cache


def time_prefill(
    backend: Any, layers: list[int4.Int4Linear], lengths: list[int], rounds: int
) -> dict[str, Any]:
    """CPU ms of each arm's prefill per prompt length (median of `rounds`, arms
    interleaved), its ratio to `float`'s, and whether its next token is `float`'s."""
    dequantizer = Dequantizer(layers)
    chunk, vocab = prefill_chunk(), backend.model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    prompts = {n: torch.randint(100, vocab, (n,), generator=generator).tolist() for n in lengths}
    times: dict[tuple[str, int], list[float]] = {}
    tokens: dict[tuple[str, int], int] = {}
    for _ in range(rounds):
        for n, ids in prompts.items():
            for arm in PREFILL_ARMS:
                with prefill_arm(layers, arm, dequantizer):
                    ms, tokens[arm, n], _ = prefill(backend, ids, chunk)
                times.setdefault((arm, n), []).append(ms)
    report: dict[str, Any] = {"chunk_tokens": chunk}
    for n in lengths:
        base = statistics.median(times["float", n])
        report[f"{n}_tokens"] = {
            arm: {
                "cpu_ms": round(statistics.median(times[arm, n]), 1),
                "ratio": round(statistics.median(times[arm, n]) / base, 3),
                "same_next_token": tokens[arm, n] == tokens["float", n],
            }
            for arm in PREFILL_ARMS
        }
    float_mb = sum(layer.in_features * layer.out_features for layer in layers) * 2 / 2**20
    report["held_mb"] = {"float": round(float_mb), "dequantize": round(dequantizer.held_mb())}
    report["held_mb"]["kernel"] = 0
    return report


def time_decode(backend: Any, prompt: int, steps: int) -> dict[str, Any] | None:
    """CPU ms of a decode step over a `prompt`-token cache with the output projection
    packed and plain (arms interleaved; medians), or None where it is not packed."""
    model = backend.model
    head = model.get_output_embeddings()
    if not isinstance(head, int4.PackedLinear):
        return None
    plain = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    plain.weight, plain.bias = nn.Parameter(head.weight, requires_grad=False), head.bias
    ids = torch.randint(100, model.config.vocab_size, (prompt,)).tolist()
    _, token, cache = prefill(backend, ids, prefill_chunk())
    times: dict[str, list[float]] = {arm: [] for arm in DECODE_ARMS}
    tokens: dict[str, int] = {}
    for _ in range(steps):
        for arm in DECODE_ARMS:
            model.set_output_embeddings(head if arm == "packed" else plain)
            started = time.thread_time()
            tokens[arm] = backend.forward(cache, [token])
            times[arm].append((time.thread_time() - started) * 1000)
            backend.crop(cache, prompt)
    model.set_output_embeddings(head)
    packed = statistics.median(times["packed"])
    report: dict[str, Any] = {"prompt_tokens": prompt, "steps": steps}
    for arm in DECODE_ARMS:
        step = statistics.median(times[arm])
        report[arm] = {"cpu_ms_per_step": round(step, 2), "ratio": round(step / packed, 3)}
    report["plain"]["same_token"] = tokens["plain"] == tokens["packed"]
    report["held_mb"] = {"packed": round(head.weight.numel() * 2 / 2**20), "plain": 0}
    return report


def time_steps(model: Any, prompt: int, steps: int) -> dict[str, Any]:
    """CPU ms of a forward of 1..`int4.ROWS` new tokens (a decode step, a verification of
    drafts) over a `prompt`-token cache, through the lean step (as served, lean.py) and
    the model's own forward (medians of `steps`, widths and paths interleaved), and
    whether the two computed the same logits."""
    from lsp_server.model.backend import TransformersBackend

    paths = {
        "lean": TransformersBackend(model, []),
        "forward": TransformersBackend(model, [], lean=False),
    }
    ids = torch.randint(100, model.config.vocab_size, (prompt + int4.ROWS,)).tolist()
    _, _, cache = prefill(paths["lean"], ids[:prompt], prefill_chunk())
    widths = range(1, int4.ROWS + 1)
    times: dict[tuple[str, int], list[float]] = {}
    logits: dict[tuple[str, int], torch.Tensor] = {}
    with torch.inference_mode():
        for _ in range(steps):
            for width in widths:
                for path, backend in paths.items():
                    started = time.thread_time()
                    logits[path, width] = backend._run(cache, ids[prompt : prompt + width], width)
                    times.setdefault((path, width), []).append(
                        (time.thread_time() - started) * 1000
                    )
                    backend.crop(cache, prompt)
    report: dict[str, Any] = {
        "prompt_tokens": prompt,
        "steps": steps,
        "draft_tokens": paths["lean"].draft_tokens,
    }
    for width in widths:
        lean, forward = (statistics.median(times[path, width]) for path in paths)
        report[f"{width}_tokens"] = {
            "lean_cpu_ms": round(lean, 2),
            "forward_cpu_ms": round(forward, 2),
            "ratio": round(lean / forward, 3),
            "same_logits": bool(torch.equal(logits["lean", width], logits["forward", width])),
        }
    return report


def run(
    model: str, lengths: list[int], *, rounds: int = 3, steps: int = 30, threads: int = 1
) -> dict[str, Any]:
    """Load `model` in int4 as the server does and time both comparisons, torch on
    `threads` threads (as it was again afterwards)."""
    from lsp_server.model.backend import TransformersBackend
    from lsp_server.model.loading import load_model

    loaded = load_model(model, dtype="int4")
    layers = [m for m in loaded.model.modules() if isinstance(m, int4.Int4Linear)]
    backend = TransformersBackend(loaded.model, [])
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {
            "model": loaded.name,
            "threads": threads,
            "cpu": torch.backends.cpu.get_cpu_capability(),
            "prefill": time_prefill(backend, layers, lengths, rounds),
            "decode": time_decode(backend, max(lengths), steps),
            "steps": time_steps(loaded.model, max(lengths), steps),
        }
    finally:
        torch.set_num_threads(before)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="codetailor bench int4",
        description="What the int4 model's bf16 copies buy: prefill with and without the "
        "4-bit layers' float weights, decode with and without the packed output projection.",
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--prompt-tokens", default="100,500,1500", help="comma-separated")
    parser.add_argument("--rounds", type=int, default=3, help="prefills per arm and length")
    parser.add_argument("--steps", type=int, default=30, help="decode steps per arm")
    parser.add_argument("--threads", type=int, default=1, help="torch's threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        lengths = [int(n) for n in args.prompt_tokens.split(",")]
    except ValueError:
        parser.error(f"--prompt-tokens: not comma-separated numbers: {args.prompt_tokens}")
    if min(lengths) < 1 or args.rounds < 1 or args.steps < 1:
        parser.error("--prompt-tokens, --rounds and --steps must be positive")
    if not int4.kernel_available():
        print("error: this torch has no 4-bit CPU kernels (torch 2.6 or later)", file=sys.stderr)
        return 2
    report = run(
        args.model, lengths, rounds=args.rounds, steps=args.steps, threads=max(args.threads, 1)
    )
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        from lsp_server.measure.tables import print_summary

        print_summary(report, title="int4: what the bf16 copies buy (CPU ms, medians)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
