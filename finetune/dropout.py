"""LoRA's input dropout, drawn from far fewer random numbers on a CPU.

PEFT puts an `nn.Dropout` before every LoRA layer. torch draws its mask one
random number per element, on one thread: on a 2-core CPU, for SmolLM2-135M's
210 LoRA layers, the masks took about a quarter of a training step
(docs/benchmarks.md). `GapDropout` draws the same mask from the gaps between
dropped elements instead: in a row of independent Bernoulli(p) trials the
distance from one drop to the next is geometric with parameter p, so drawing
those distances and summing them places every drop with exactly the
distribution `nn.Dropout` has, from about p * n random numbers instead of n
(5% of them at PEFT's usual p = 0.05). Kept elements are scaled by 1 / (1 - p),
as torch does; in eval mode, or at p = 0, the input passes unchanged.

On a GPU torch's own dropout is a fused kernel and stays: `_wrap_lora` swaps
the modules only for a model on the CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def drop_positions(n: int, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """The indices in [0, n) that a row of n Bernoulli(p) trials drops, ascending."""
    if n <= 0 or p <= 0.0:
        return torch.empty(0, dtype=torch.long)
    expected = n * p
    chunk = int(expected + 6.0 * math.sqrt(expected) + 64)
    positions: list[torch.Tensor] = []
    last = -1.0  # the position of the latest drop drawn
    while last < n:
        # geometric_ counts the trials up to and including the next drop (>= 1).
        gaps = torch.empty(chunk, dtype=torch.float64).geometric_(p, generator=generator)
        at = gaps.cumsum_(0).add_(last)
        positions.append(at)
        last = float(at[-1])
    every = torch.cat(positions)
    return every[every < n].long()


class GapDropout(nn.Module):
    """`nn.Dropout(p)` with the mask drawn as gaps between drops (see the module's text)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        mask = torch.full((x.numel(),), 1.0 / (1.0 - self.p), dtype=x.dtype, device=x.device)
        mask[drop_positions(x.numel(), self.p).to(x.device)] = 0
        return x * mask.view_as(x)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_gap_dropout(model: Any) -> int:
    """Replace every LoRA layer's `nn.Dropout` in `model` (a PEFT model) by a `GapDropout`
    of the same p; return how many were replaced."""
    replaced = 0
    for module in model.modules():
        drops = getattr(module, "lora_dropout", None)
        if not isinstance(drops, nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            if isinstance(drop, nn.Dropout) and drop.p > 0:
                gap = GapDropout(drop.p)
                gap.train(drop.training)
                drops[name] = gap
                replaced += 1
    return replaced
