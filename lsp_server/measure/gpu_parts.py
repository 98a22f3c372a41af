"""The parts of `codetailor bench gpu` (gpu_bench.py runs them, each in its time budget).

Each part takes the `Bench` (what the parts share: the machine, the sizes, the
default model once loaded) and returns its figures, or raises: the runner then
reports the part as failed with the error's first line, and the others still run.
The figures come from the benchmarks that already measure them:
- `default_model`, `qwen_shape`: time to first token on a cold and a warm KV
  cache, decode tokens/s and tokens per forward (`engine_speed.first_token_and_decode`),
  for the default model as the server loads it and for a randomly initialised
  model of Qwen2.5-Coder-1.5B's shape (`random_model`);
- `compiled_identity`: the compiled decode (`model.compiled`) against eager
  greedy decoding, token by token, on the default model's weights;
- `next_edit`: `bench nextedit`'s run (`next_edit_speed.measure`) on the default model;
- `lora_training`: `python -m finetune.lora_speed`, our trainer against Hugging
  Face's Trainer + PEFT, in a process of its own (this package never imports
  `finetune`), which also bounds it in time.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Sizes:
    """How much each part does: the full run's on a GPU, a smoke run's in `--tiny`."""

    repeats: int  # timed requests per figure (medians)
    new_tokens: int  # tokens decoded per decode-rate request
    identity_prompts: int  # prompts compared compiled against eager
    identity_tokens: int  # tokens generated per compared prompt
    next_edit_places: int
    next_edit_budget_s: float | None  # None: the predictor's own
    lora_steps: int
    lora_warmup: int
    lora_batch: int
    lora_seq_len: int


FULL = Sizes(5, 64, 8, 48, 12, None, 20, 3, 4, 1024)
# A tiny random model never ends its rewrite: its next edits stop at a time budget.
TINY = Sizes(2, 8, 2, 8, 2, 1.0, 3, 1, 2, 32)


@dataclass
class Bench:
    """What the parts share: the device, the sizes, the default model's spec and, once a
    part loaded it, the default model (or why it did not load)."""

    device: str  # "cuda" or "cpu"
    tiny: bool
    model: str  # the default model's spec (a tiny model's folder in a smoke run)
    file: Path  # the source file the prompts come from
    sizes: Sizes = FULL
    _held: Any = None
    _failed: str | None = None
    deadline: float = field(default=0.0)

    def default(self) -> Any:
        """The default model loaded as `codetailor serve` loads it (a factory `Loaded`),
        once; a part that needs it after it failed to load fails with the same reason."""
        if self._failed is not None:
            raise CodetailorError(f"the default model did not load: {self._failed}")
        if self._held is None:
            from lsp_server.model.factory import load_completers
            from lsp_server.spec import ModelSpec

            # compile="auto" as `serve` has it: the decode steps compiled on CUDA.
            spec = ModelSpec(model=self.model, device=self.device, compile="auto")
            try:
                self._held = load_completers(spec)
            except BaseException as exc:  # over its part's budget too: not loaded again
                self._failed = first_line(exc)
                raise
        return self._held

    def release(self) -> None:
        """Let go of the default model (its GPU memory too)."""
        self._held = None
        free_memory()

    def prompt(self, held: Any, place: float = 2 / 3) -> list[int]:
        """The completer's prompt ids at a cursor `place` into the file, mid-line."""
        from lsp_server.measure.engine_speed import mid_line_cursor

        text = self.file.read_text()
        offset = mid_line_cursor(text, place)
        prompt = held.completer.prompt_for(text[:offset], text[offset:])
        return list(held.model.tokenizer.encode(prompt))


def default_model(bench: Bench) -> dict[str, Any]:
    """The default model as the server runs it: load, then the engine's speed."""
    from lsp_server.measure.engine_speed import first_token_and_decode

    started = time.monotonic()
    held = bench.default()
    load_s = time.monotonic() - started  # with the compile of the decode steps, where on
    loaded, engine = held.model, held.engine()
    figures = first_token_and_decode(
        engine, bench.prompt(held), bench.sizes.repeats, new_tokens=bench.sizes.new_tokens
    )
    return {
        "model": loaded.name,
        "dtype": loaded.dtype,
        "load_s": round(load_s, 2),
        **compile_facts(engine.backend),
        **figures,
    }


def qwen_shape(bench: Bench) -> dict[str, Any]:
    """A randomly initialised model of Qwen2.5-Coder-1.5B's shape (tiny in a smoke run),
    on the backend the server would give it, decoding a fixed number of tokens (no EOS)."""
    from lsp_server.measure.engine_speed import first_token_and_decode
    from lsp_server.measure.random_model import (
        QWEN_CODER_NAME,
        TINY_NAME,
        qwen_coder_config,
        random_model,
        text_ids,
    )
    from lsp_server.model.engine import Engine
    from lsp_server.model.factory import window_tokens
    from lsp_server.model.loading import pick_device
    from lsp_server.model.wiring import backend_over

    device, dtype = pick_device(bench.device, "auto")
    config = qwen_coder_config(tiny=bench.tiny)
    started = time.monotonic()
    model = random_model(config, device, dtype)
    window = window_tokens(device)
    backend = backend_over(model, (), device, dtype, "auto", window_tokens=window)
    built = time.monotonic() - started
    ids = text_ids(bench.file.read_text(), config.vocab_size, window // (16 if bench.tiny else 2))
    figures = first_token_and_decode(
        Engine(backend), ids, bench.sizes.repeats, new_tokens=bench.sizes.new_tokens
    )
    parameters = sum(p.numel() for p in model.parameters())
    compiled = compile_facts(backend)
    del model, backend
    return {
        "model": TINY_NAME if bench.tiny else QWEN_CODER_NAME,
        "parameters_m": round(parameters / 1e6, 1),
        "dtype": dtype,
        "build_s": round(built, 2),
        **compiled,
        **figures,
    }


def compile_facts(backend: Any) -> dict[str, Any]:
    """Whether `backend`'s steps run compiled, and the seconds each width's compile took."""
    seconds = getattr(backend, "compile_seconds", None)
    return {
        "compiled": seconds is not None and bool(getattr(backend, "widths", ())),
        "compile_s": round(sum(seconds.values()), 1) if seconds else None,
    }


def compiled_identity(bench: Bench) -> dict[str, Any]:
    """The compiled decode against eager greedy decoding on the default model's weights
    (bf16 on a GPU), prompt by prompt: identical outputs, where the others first differ,
    and the decode speed of each. On a CPU (a smoke run) the compiled backend runs its
    static-cache steps eager (no widths): compiling there takes minutes."""
    from lsp_server.model.backend import TransformersBackend
    from lsp_server.model.compiled import CompiledBackend
    from lsp_server.model.engine import Engine, common_prefix_length

    held = bench.default()
    loaded, served = held.model, held.engine().backend
    if isinstance(served, CompiledBackend):
        compiled = served
    else:
        widths = () if bench.device == "cpu" else (1, 9)
        compiled = CompiledBackend(loaded.model, served.eos_token_ids, widths=widths)
        compiled.warm()
    eager = Engine(TransformersBackend(loaded.model, served.eos_token_ids), reuse=False)
    fast = Engine(compiled)
    differences: list[int] = []
    speed: dict[str, list[float]] = {"eager": [], "compiled": []}
    n = bench.sizes.identity_prompts
    for i in range(n):
        ids = bench.prompt(held, place=(i + 1) / (n + 1))
        want = eager.generate(ids, max_new_tokens=bench.sizes.identity_tokens)
        got = fast.generate(ids, max_new_tokens=bench.sizes.identity_tokens)
        if got.tokens != want.tokens:
            differences.append(common_prefix_length(got.tokens, want.tokens))
        for name, g in (("eager", want), ("compiled", got)):
            if g.generated_tokens > 1:
                speed[name].append((g.generated_tokens - 1) / (g.decode_ms / 1000))
    rate = {k: round(statistics.median(v), 1) if v else None for k, v in speed.items()}
    return {
        "model": loaded.name,
        "dtype": loaded.dtype,
        "compiled_widths": list(compiled.widths),
        "prompts": n,
        "identical": n - len(differences),
        "first_difference_at": differences,
        "eager_decode_tokens_per_s": rate["eager"],
        "compiled_decode_tokens_per_s": rate["compiled"],
    }


def next_edit(bench: Bench) -> dict[str, Any]:
    """`bench nextedit`'s run on the default model as loaded here (its rows left out)."""
    from lsp_server.measure.next_edit_speed import measure

    args = argparse.Namespace(
        model=bench.model,
        file=bench.file,
        places=bench.sizes.next_edit_places,
        window_lines=0,
        budget_s=bench.sizes.next_edit_budget_s,
        max_tokens=16,
    )
    report = measure(args, bench.default())
    return {k: v for k, v in report.items() if k not in ("rows", "file")}


def lora_training(bench: Bench) -> dict[str, Any]:
    """`python -m finetune.lora_speed` in a process of its own, stopped at the deadline."""
    s = bench.sizes
    command = [sys.executable, "-m", "finetune.lora_speed", "--device", bench.device]
    command += ["--steps", str(s.lora_steps), "--warmup", str(s.lora_warmup)]
    command += ["--batch-size", str(s.lora_batch), "--seq-len", str(s.lora_seq_len)]
    command += ["--tiny"] if bench.tiny else []
    timeout = max(bench.deadline - time.monotonic(), 1.0) if bench.deadline else None
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, cwd=REPO, check=False
        )
    except subprocess.TimeoutExpired:
        raise TimeoutError("the training run outlasted the part's budget") from None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        errors = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
        raise RuntimeError(f"finetune.lora_speed: {errors[-1]}")
    result: dict[str, Any] = json.loads(lines[-1])
    # The training ran in its own process: its peak is the larger of the two trainers'.
    peaks = [result[k]["peak_gpu_memory_mb"] for k in ("ours", "hf")]
    result["peak_gpu_memory_mb"] = max(peaks) if None not in peaks else None
    return result


def free_memory() -> None:
    """Collect garbage and hand cached GPU memory back, so the next part starts clean."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def first_line(exc: BaseException) -> str:
    """An error as one line: its message's first line, else its type's name."""
    text = str(exc).strip()
    line = text.splitlines()[0][:300] if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__
