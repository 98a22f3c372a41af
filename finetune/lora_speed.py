"""LoRA training speed: our trainer (`finetune.train.Trainer`) against Hugging Face's
`Trainer` with the same PEFT LoRA, on the same batches, in one run.

    python -m finetune.lora_speed [--tiny | --default-model] [--steps 20] [--batch-size 4]
                                  [--seq-len 1024]

Both train a randomly initialised model of Qwen2.5-Coder-1.5B's shape
(`lsp_server.measure.random_model`; `--tiny`: the same architecture, tiny) on rows
of seeded random token ids, or with `--default-model` the default model's real
weights (SmolLM2-135M, what a CPU trains) on rows of this project's own source,
each from the same weights, with the same LoRA (`train._wrap_lora`), AdamW
settings, clipping and schedule, on the same rows in the same order. Ours runs as
`codetailor finetune` does (its dtype: the base in bf16 on a GPU and on a CPU with
bf16 hardware; its LoRA dropout on the CPU); Hugging Face's `Trainer` runs over the
weights `from_pretrained` gives by default there (`hf`: fp32 on a CPU) and, where
ours differs, over our bf16 base too (`hf_bfloat16`), beside ours over fp32
weights (`ours_float32`, the loss curve bf16 must match), so each ratio says what
one of our choices is worth. The first `--warmup` steps are left
out of the rate (CUDA start-up, kernel selection). Prints one JSON object: tokens
per second, peak GPU memory (None on a CPU), each step's training loss and their
mean (the curves agree when both trained the same thing), and ours over each.
`codetailor bench gpu` runs this as its LoRA part, in a process of its own: the
server's package never imports `finetune`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
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
from finetune.train import training_dtype


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finetune.lora_speed",
        description="LoRA training tokens/s of our trainer against Hugging Face's Trainer + "
        "PEFT, on the same batches of the same randomly initialised model.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--tiny", action="store_true", help="a tiny model (a CPU smoke run)")
    which.add_argument(
        "--default-model",
        action="store_true",
        help="the default model's real weights on this project's source (a CPU's run)",
    )
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
    cfg = FinetuneConfig(
        repo=".",
        out=tempfile.mkdtemp(prefix="codetailor-lora-speed-"),
        seq_len=args.seq_len,
        batch_size=args.batch_size,
        max_steps=args.steps,
        eval_every=0,
        patience=0,
        match_samples=0,
        device=device,
    )
    count = args.steps * args.batch_size
    if args.default_model:
        name, blocks = DEFAULT_MODEL, source_blocks(cfg, count)
        build: Any = _default_model
    else:
        config = qwen_coder_config(tiny=args.tiny)
        name = TINY_NAME if args.tiny else QWEN_CODER_NAME
        blocks = random_blocks(config.vocab_size, cfg, count=count)
        build = functools.partial(_random_model, config)
    ours_dtype = training_dtype("auto", device)
    runs = {"ours": _measured(ours_rate, (build, device, ours_dtype, cfg, blocks), args.warmup)}
    runs["hf"] = _measured(hf_rate, (build, device, dtype, cfg, blocks), args.warmup)
    if ours_dtype != dtype:  # what each half of the gain is worth, and the fp32 loss curve
        same = (build, device, ours_dtype, cfg, blocks)
        runs[f"hf_{ours_dtype}"] = _measured(hf_rate, same, args.warmup)
        runs[f"ours_{dtype}"] = _measured(
            ours_rate, (build, device, dtype, cfg, blocks), args.warmup
        )
    ours = runs["ours"]
    others = {k: v for k, v in runs.items() if k != "ours"}
    ratios = {
        f"ours_over_{k}": round(ours["tokens_per_s"] / v["tokens_per_s"], 3)
        for k, v in others.items()
    }
    gaps = {f"loss_gap_{k}": loss_gap(ours["losses"], v["losses"]) for k, v in others.items()}
    return {
        "model": name,
        "device": device,
        "dtype": ours_dtype,
        "hf_dtype": dtype,
        "steps": args.steps,
        "timed_steps": args.steps - args.warmup,
        "batch_size": args.batch_size,
        "seq_len": args.seq_len,
        "lora_r": cfg.lora_r,
        **runs,
        **ratios,
        **gaps,
    }


def loss_gap(ours: list[float], theirs: list[float]) -> float:
    """The largest difference of two runs' training losses at the same step."""
    return round(max(abs(a - b) for a, b in zip(ours, theirs, strict=True)), 4)


def random_blocks(vocab_size: int, cfg: FinetuneConfig, count: int) -> Blocks:
    """`count` full rows of seeded random token ids (speed does not depend on the text)."""
    import torch

    g = torch.Generator().manual_seed(cfg.seed)
    ids = torch.randint(0, vocab_size - 1, (count, cfg.seq_len), generator=g).tolist()
    return Blocks(ids, [cfg.seq_len] * count)


DEFAULT_MODEL = "SmolLM2-135M (the default model's weights)"


def source_blocks(cfg: FinetuneConfig, count: int) -> Blocks:
    """`count` full rows of this project's own Python source, in the default model's
    tokens (real code, so the loss curves mean something), repeated as needed."""
    from lsp_server.model.wiring import load_tokenizer

    package = Path(__file__).resolve().parents[1]
    text = "\n".join(p.read_text() for p in sorted(package.glob("lsp_server/**/*.py")))
    ids = load_tokenizer(cfg.model)(text, add_special_tokens=False)["input_ids"]
    need = count * cfg.seq_len
    ids = (ids * (need // len(ids) + 1))[:need]
    rows = [ids[i * cfg.seq_len : (i + 1) * cfg.seq_len] for i in range(count)]
    return Blocks(rows, [cfg.seq_len] * count)


def _random_model(config: Any, device: str, dtype: str, seed: int) -> Any:
    from lsp_server.measure.random_model import random_model

    return random_model(config, device, dtype, seed=seed)


def _default_model(device: str, dtype: str, seed: int) -> Any:
    from lsp_server.model.loading import load_model

    return load_model("smollm2-135m", device=device, dtype=dtype, training=True).model


def _measured(rate: Any, setup: tuple[Any, ...], warmup: int) -> dict[str, Any]:
    """`rate(model, cfg, blocks, clock)` on a fresh model, with its peak GPU memory."""
    import torch

    build, device, dtype, cfg, blocks = setup
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build(device, dtype, cfg.seed)
    model.train()
    clock = Clock(warmup, cfg.max_steps, cuda)
    losses = rate(model, cfg, blocks, clock)
    timed_tokens = (cfg.max_steps - warmup) * cfg.batch_size * cfg.grad_accum * cfg.seq_len
    result = {
        "tokens_per_s": round(timed_tokens / clock.seconds(), 1),
        "mean_loss": round(sum(losses) / len(losses), 4),
        "losses": [round(x, 4) for x in losses],
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


def ours_rate(model: Any, cfg: FinetuneConfig, blocks: Blocks, clock: Clock) -> list[float]:
    """Our Trainer's steps (the loop of `train.fit`, without its evaluations and
    checkpoints), in finetune's mixed precision; each step's training loss."""
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
    return losses


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


def hf_rate(model: Any, cfg: FinetuneConfig, blocks: Blocks, clock: Clock) -> list[float]:
    """Hugging Face's Trainer over the same LoRA model and rows; each step's training loss."""
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

    losses: list[float] = []

    class Steps(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            clock.stepped(int(state.global_step))

        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            logs = kwargs.get("logs") or {}
            if "loss" in logs:
                losses.append(float(logs["loss"]))

    trainer = Trainer(
        model=peft_model,
        args=TrainingArguments(**_hf_arguments(cfg, next(model.parameters()).is_cuda)),
        train_dataset=Rows(),
        callbacks=[Steps()],
    )
    with contextlib.redirect_stdout(sys.stderr):  # it prints its metrics; stdout is the result
        trainer.train()
    return losses


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
        "logging_strategy": "steps",  # every step's loss, for the curves
        "logging_steps": 1,
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
