"""LoRA training speed: our trainer (`finetune.train.Trainer`) against Hugging Face's
`Trainer` with the same PEFT LoRA, on the same batches, in one run.

    python -m finetune.lora_speed [--tiny] [--steps 20] [--batch-size 4] [--seq-len 1024]

Both train a randomly initialised model of Qwen2.5-Coder-1.5B's shape
(`lsp_server.measure.random_model`; `--tiny`: the same architecture, tiny) in the
dtype `codetailor finetune` picks (bf16 on a GPU, fp32 on a CPU), each from the
same seeded weights, with the same LoRA (`train._wrap_lora`), AdamW settings,
clipping and schedule, on the same rows of token ids in the same order. The first
`--warmup` steps are left out of the rate (CUDA start-up, kernel selection).
Prints one JSON object: tokens per second, peak GPU memory (None on a CPU) and
mean training loss of each (the losses agree when both trained the same thing),
and ours/hf. `codetailor bench gpu` runs this as its LoRA part, in a process of
its own: the server's package never imports `finetune`.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from finetune.data.examples import Blocks
from finetune.evaluate import to_batch
from finetune.schedule import BlockOrder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.lora_speed",
        description="LoRA training tokens/s of our trainer against Hugging Face's Trainer + "
        "PEFT, on the same batches of the same randomly initialised model.",
    )
    parser.add_argument("--tiny", action="store_true", help="a tiny model (a CPU smoke run)")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps of each trainer")
    parser.add_argument("--warmup", type=int, default=3, help="first steps left out of the rate")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    args = parser.parse_args(argv)
    if args.steps <= args.warmup or args.warmup < 0:
        parser.error("--steps must be more than --warmup, and --warmup at least 0")
    print(json.dumps(compare(args)))
    return 0


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Both trainers, one after the other, on the same batches."""
    from lsp_server.measure.random_model import QWEN_CODER_NAME, TINY_NAME, qwen_coder_config
    from lsp_server.model.loading import pick_device

    device, dtype = pick_device(args.device, "auto", training=True)
    config = qwen_coder_config(tiny=args.tiny)
    cfg = FinetuneConfig(
        repo=".",
        out=tempfile.mkdtemp(prefix="codetailor-lora-speed-"),
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_steps=args.steps,
        eval_every=0,
        patience=0,
        match_samples=0,
    )
    blocks = random_blocks(config.vocab_size, cfg, count=args.steps * args.batch_size)
    setup = (config, device, dtype, cfg, blocks)
    ours = _measured(ours_rate, setup, args.warmup)
    hf = _measured(hf_rate, setup, args.warmup)
    return {
        "model": TINY_NAME if args.tiny else QWEN_CODER_NAME,
        "device": device,
        "dtype": dtype,
        "steps": args.steps,
        "timed_steps": args.steps - args.warmup,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "lora_r": cfg.lora_r,
        "ours": ours,
        "hf": hf,
        "ours_over_hf": round(ours["tokens_per_s"] / hf["tokens_per_s"], 3),
    }


def random_blocks(vocab_size: int, cfg: FinetuneConfig, count: int) -> Blocks:
    """`count` full rows of seeded random token ids (speed does not depend on the text)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(0, vocab_size - 1, (count, cfg.seq_len), generator=g).tolist()
    return Blocks(ids, [cfg.seq_len] * count)


def _measured(rate: Any, setup: tuple[Any, ...], warmup: int) -> dict[str, Any]:
    """`rate(model, cfg, blocks, clock)` on a fresh model, with its peak GPU memory."""
    import torch

    config, device, dtype, cfg, blocks = setup
    from lsp_server.measure.random_model import random_model

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = random_model(config, device, dtype, seed=cfg.seed)
    model.train()
    clock = Clock(warmup, cfg.max_steps, cuda)
    mean_loss = rate(model, cfg, blocks, clock)
    timed_tokens = (cfg.max_steps - warmup) * cfg.batch_size * cfg.grad_accum * cfg.seq_len
    result = {
        "tokens_per_s": round(timed_tokens / clock.seconds(), 1),
        "mean_loss": round(mean_loss, 4),
        "peak_gpu_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20) if cuda else None,
    }
    del model
    gc.collect()
    return result


class Clock:
    """Times the steps after the first `warmup` of `total` (waiting for the GPU at both ends)."""

    def __init__(self, warmup: int, total: int, cuda: bool) -> None:
        self.warmup, self.total, self.cuda = warmup, total, cuda
        self.start = self.end = 0.0

    def stepped(self, step: int) -> None:
        """Step `step` (1-based) has just ended."""
        if step in (self.warmup, self.total):
            if self.cuda:
                import torch

                torch.cuda.synchronize()
            if step == self.warmup:
                self.start = time.perf_counter()
            if step == self.total:
                self.end = time.perf_counter()

    def seconds(self) -> float:
        if not self.end:
            raise RuntimeError(f"training stopped before step {self.total}")
        return self.end - (self.start or self.end)


def ours_rate(model: Any, cfg: FinetuneConfig, blocks: Blocks, clock: Clock) -> float:
    """Our Trainer's steps (the loop of `train.fit`, without its evaluations and
    checkpoints); the mean training loss."""
    from accelerate import Accelerator

    from finetune.train import Data, Job, Trainer
    from lsp_server.completion.prompt import detect_format
    from lsp_server.repo.corpus import Corpus

    out = Path(cfg.out)
    accelerator = Accelerator(cpu=not next(model.parameters()).is_cuda)
    job = Job(cfg, Path(cfg.repo), out, out, None, accelerator, fsdp=False, progress=False)
    empty = Blocks([], [])
    data = Data(
        loaded=_Weights(model),
        fmt=detect_format([]),
        corpus=Corpus([]),
        train_files=[],
        held_files=[],
        train=blocks,
        held=empty,
        eval_blocks=empty,
        line_samples=[],
        total_steps=int(cfg.max_steps or 1),
    )
    _seed(cfg.seed)  # the LoRA weights start as the Hugging Face run's do
    trainer = Trainer(job, data)
    trainer.model.train()
    order = _Sequential()
    losses = []
    for step in range(1, data.total_steps + 1):
        losses.append(trainer.step(order))
        clock.stepped(step)
    return sum(losses) / len(losses)


class _Weights:
    """What our Trainer reads of a loaded model: the model."""

    def __init__(self, model: Any) -> None:
        self.model = model


class _Sequential(BlockOrder):
    """The rows in order, as the Hugging Face run's sequential sampler takes them."""

    def __init__(self) -> None:
        super().__init__(0, 0)

    def rows(self, start: int, n: int) -> list[int]:
        return list(range(start, start + n))


def hf_rate(model: Any, cfg: FinetuneConfig, blocks: Blocks, clock: Clock) -> float:
    """Hugging Face's Trainer over the same LoRA model and rows; the mean training loss."""
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from finetune.train import _wrap_lora

    _seed(cfg.seed)
    peft_model = _wrap_lora(cfg, model)

    class Rows(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(blocks.ids)

        def __getitem__(self, i: int) -> dict[str, Any]:
            ids, mask, labels = to_batch(blocks, [i])
            return {"input_ids": ids[0], "attention_mask": mask[0], "labels": labels[0]}

    class Steps(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.stepped(int(state.global_step))

    arguments = TrainingArguments(**_hf_arguments(cfg, next(model.parameters()).is_cuda))
    trainer = Trainer(model=peft_model, args=arguments, train_dataset=Rows(), callbacks=[Steps()])
    with contextlib.redirect_stdout(sys.stderr):  # it prints its metrics; stdout is the result
        return float(trainer.train().training_loss)


def _hf_arguments(cfg: FinetuneConfig, cuda: bool) -> dict[str, Any]:
    """Hugging Face's `TrainingArguments` for what `cfg` sets ours to: the same batches,
    AdamW settings, clipping and cosine schedule with warm-up; no saving, no logging."""
    from transformers import TrainingArguments

    fields = getattr(TrainingArguments, "__dataclass_fields__", {})
    values: dict[str, Any] = {
        "output_dir": cfg.out,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "max_steps": int(cfg.max_steps or 1),
        "learning_rate": cfg.lr,
        "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm,
        "lr_scheduler_type": "cosine",
        "save_strategy": "no",
        "logging_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "use_cpu": not cuda,
        "dataloader_num_workers": 0,
        "remove_unused_columns": False,
        "seed": cfg.seed,
    }
    # Older transformers take the warm-up fraction as warmup_ratio, newer as warmup_steps.
    if "warmup_ratio" in fields:
        values["warmup_ratio"] = cfg.warmup_fraction
    else:
        values["warmup_steps"] = cfg.warmup_fraction
    if "train_sampling_strategy" in fields:  # in order, as ours takes them (else random)
        values["train_sampling_strategy"] = "sequential"
    return values


def _seed(seed: int) -> None:
    import torch

    torch.manual_seed(seed)


if __name__ == "__main__":
    sys.exit(main())
