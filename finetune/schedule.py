"""When things happen in training: the learning rate, the data order, and stop requests.

All three are functions of the step (or a flag checked once per step), which is
what lets a resumed run continue exactly where its checkpoint left off.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any


def lr_schedule(
    total: int | Callable[[], int], warmup_fraction: float, floor: float
) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay from the peak to `floor` times the peak at step
    `total`. `total` may be a function (a time budget's plan, `finetune.budget.StepPlan`):
    the curve then follows the plan as it is made, ending at the floor at its end."""
    steps = total if callable(total) else lambda: total

    def factor(step: int) -> float:
        end = steps()
        warmup = int(end * warmup_fraction)
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, end - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class BlockOrder:
    """An endless stream of block indices: a fresh seeded permutation for every epoch."""

    def __init__(self, count: int, seed: int) -> None:
        self.count, self.seed = count, seed
        self._perms: dict[int, list[int]] = {}

    def rows(self, start: int, n: int) -> list[int]:
        """The stream's entries start .. start+n-1."""
        import torch

        picked = []
        for i in range(start, start + n):
            epoch, pos = divmod(i, self.count)
            if epoch not in self._perms:
                g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
                self._perms[epoch] = torch.randperm(self.count, generator=g).tolist()
            picked.append(self._perms[epoch][pos])
        return picked


class StopFlag:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT stops now."""

    def __init__(self) -> None:
        self.hit = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.hit and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.hit = True

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopFlag]:
        """Catch the signals while the block runs (only the main thread can), then restore."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def requested(self, accelerator: Any) -> bool:
        """True on every process as soon as any one of them was signalled."""
        if accelerator.num_processes == 1:
            return self.hit
        import torch

        flag = torch.tensor([float(self.hit)], device=accelerator.device)
        return bool(accelerator.reduce(flag, reduction="sum").item() > 0)
