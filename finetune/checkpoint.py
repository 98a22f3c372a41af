"""Resumable training state in the run's work folder (`OUT.partial/checkpoint`).

A checkpoint holds only what changes during training: the LoRA weights (and
the best ones seen so far), the optimizer and scheduler, the RNG state and the
loop's counters. The data order is a function of the step, so nothing about
the data needs saving beyond a fingerprint that proves it is the same data.
A checkpoint is written beside the old one, flushed to the disk and swapped
in (`finetune.durable.swap_in`), so a kill or a power cut at any moment leaves
one complete checkpoint.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from finetune.durable import swap_in

CHECKPOINT = "checkpoint"


@dataclass
class TrainState:
    """The loop's counters and history, saved as JSON in every checkpoint."""

    step: int = 0
    tokens: int = 0
    train_seconds: float = 0.0
    best_loss: float | None = None
    best_step: int = 0
    evals_without_improvement: int = 0
    stopped_early: bool = False
    before: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    data_fingerprint: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] = field(default_factory=dict)  # finetune.budget.PlanState


def save(
    work: Path, state: TrainState, lora: dict, best: dict | None, optimizer: Any, scheduler: Any
) -> None:
    """Write a complete checkpoint next to the current one, then swap it in."""
    import torch
    from safetensors.torch import save_file

    tmp, final = work / f"{CHECKPOINT}.tmp", work / CHECKPOINT
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in lora.items()}, tmp / "lora.safetensors")
    if best is not None:
        save_file(best, tmp / "best.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save({"scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()}, tmp / "loop.pt")
    (tmp / "state.json").write_text(json.dumps(asdict(state), indent=2))
    swap_in(tmp, final)


def find(work: Path) -> Path | None:
    """The newest complete checkpoint folder, if any (an interrupted swap leaves `.old`)."""
    for name in (CHECKPOINT, f"{CHECKPOINT}.old"):
        if (work / name / "state.json").is_file():
            return work / name
    return None


def read_state(folder: Path) -> TrainState:
    return TrainState(**json.loads((folder / "state.json").read_text()))


def load(folder: Path, optimizer: Any, scheduler: Any) -> tuple[TrainState, dict, dict | None]:
    """Restore optimizer, scheduler and RNG in place; return the state, LoRA and best weights."""
    import torch
    from safetensors.torch import load_file

    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
    loop = torch.load(folder / "loop.pt", weights_only=True)
    scheduler.load_state_dict(loop["scheduler"])
    torch.set_rng_state(loop["rng"])
    best_file = folder / "best.safetensors"
    best = load_file(best_file) if best_file.is_file() else None
    return read_state(folder), load_file(folder / "lora.safetensors"), best
