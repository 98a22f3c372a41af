"""The fine-tuning configuration: one typed dataclass, with help on every field.

Values come from the dataclass defaults, then a YAML file (`--config`), then the
command line, in that order. `validate` collects every problem at once, so a
user fixes them all in one go; the resolved config is printed and saved beside
the adapter.
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError

CONFIG_DIR = Path(__file__).parent / "configs"


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class FinetuneConfig:
    """Everything one `codetailor finetune` run depends on.

    The defaults suit the default model on a laptop CPU (a step is 256 tokens);
    `configs/qwen2.5-coder-1.5b.yaml` shows GPU-sized settings.
    """

    # What to train on, and where the adapter goes.
    repo: str = _f("", "the repository (a git checkout or a plain folder) to train on")
    out: str = _f("", "the adapter folder to write; created, or replaced if it holds an adapter")
    model: str = _f("smollm2-135m", "base model: smollm2-135m, a Hugging Face id, dir or .gguf")
    prompt_format: str | None = _f(None, "FIM template name; default: detected from the tokenizer")
    device: str = _f("auto", "auto, cpu, cuda[:N] or mps (under accelerate: that process's)")
    dtype: str = _f("auto", "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 or float16")
    trust_remote_code: bool = _f(False, "allow a hub model's own Python code")
    seed: int = _f(0, "seed for LoRA initialisation, FIM spans, data order and dropout")

    # Data.
    holdout: float = _f(0.1, "fraction of files held out for evaluation, split by path hash")
    max_file_bytes: int = _f(512_000, "skip files larger than this many bytes")
    extensions: list[str] = _f([], "file extensions to train on (e.g. ['.py']); [] = built-in list")
    near_duplicate_threshold: float = _f(
        0.85, "drop a file whose estimated Jaccard similarity to a kept one is at least this"
    )
    path_header: bool = _f(True, "start each document with its path, in the model's format")
    fim_rate: float = _f(0.5, "fraction of documents turned into fill-in-the-middle examples")
    spm_rate: float = _f(0.25, "fraction of FIM examples in suffix-prefix-middle order")
    seq_len: int = _f(256, "tokens per packed training sequence")

    # LoRA.
    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: float = _f(32.0, "LoRA alpha; the update is scaled by alpha / r")
    lora_dropout: float = _f(0.05, "dropout on the LoRA input")
    target_modules: list[str] = _f(
        ["all-linear"], "modules to adapt: ['all-linear'] (every linear but the output) or names"
    )

    # Optimisation.
    epochs: float = _f(1.0, "passes over the training data (ignored when max_steps is set)")
    max_steps: int | None = _f(None, "optimizer steps to run; overrides epochs")
    batch_size: int = _f(1, "sequences per micro-batch, per process")
    grad_accum: int = _f(1, "micro-batches per optimizer step")
    lr: float = _f(1e-3, "peak learning rate (AdamW)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_fraction: float = _f(0.05, "fraction of steps with linear warm-up")
    min_lr_fraction: float = _f(0.1, "cosine decay ends at this fraction of the peak rate")
    max_grad_norm: float = _f(1.0, "clip the gradient norm to this; 0 = no clipping")
    gradient_checkpointing: bool = _f(
        False, "recompute activations in backward: less memory, a third more compute"
    )

    # Evaluation, early stop and checkpoints.
    eval_every: int = _f(20, "compute held-out loss every this many steps; 0 = only at the ends")
    eval_blocks: int = _f(8, "most held-out sequences per loss evaluation")
    patience: int = _f(3, "stop after this many evaluations without improvement; 0 = never")
    match_samples: int = _f(16, "held-out lines for next-line exact match; 0 = skip")
    match_window_tokens: int = _f(256, "prompt window for next-line exact match")
    match_max_tokens: int = _f(16, "most tokens generated per next-line sample")
    checkpoint_every: int = _f(20, "save a resumable checkpoint every this many steps")

    def validate(self) -> FinetuneConfig:
        """Return self, or raise one CodetailorError listing every problem and its fix."""
        problems: list[str] = []

        def need(ok: bool, message: str) -> None:
            if not ok:
                problems.append(message)

        need(bool(self.repo), "a repository is required")
        need(bool(self.out), "--out is required")
        need(0.0 <= self.holdout < 1.0, f"holdout must be in [0, 1), got {self.holdout}")
        need(self.max_file_bytes > 0, "max_file_bytes must be positive")
        need(
            0.0 < self.near_duplicate_threshold <= 1.0,
            "near_duplicate_threshold must be in (0, 1]",
        )
        need(0.0 <= self.fim_rate <= 1.0, f"fim_rate must be in [0, 1], got {self.fim_rate}")
        need(0.0 <= self.spm_rate <= 1.0, f"spm_rate must be in [0, 1], got {self.spm_rate}")
        need(self.seq_len >= 16, f"seq_len must be at least 16, got {self.seq_len}")
        need(self.lora_r >= 1, f"lora_r must be at least 1, got {self.lora_r}")
        need(self.lora_alpha > 0, "lora_alpha must be positive")
        need(0.0 <= self.lora_dropout < 1.0, "lora_dropout must be in [0, 1)")
        need(bool(self.target_modules), "target_modules must name at least one module")
        need(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        need(
            self.max_steps is None or self.max_steps >= 1,
            f"max_steps must be at least 1, got {self.max_steps}",
        )
        need(
            self.batch_size >= 1 and self.grad_accum >= 1, "batch_size and grad_accum must be >= 1"
        )
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(self.weight_decay >= 0, "weight_decay must not be negative")
        need(0.0 <= self.warmup_fraction < 1.0, "warmup_fraction must be in [0, 1)")
        need(0.0 <= self.min_lr_fraction <= 1.0, "min_lr_fraction must be in [0, 1]")
        need(self.max_grad_norm >= 0, "max_grad_norm must not be negative")
        need(self.eval_every >= 0 and self.eval_blocks >= 1, "eval_every >= 0, eval_blocks >= 1")
        need(self.patience >= 0, "patience must not be negative")
        need(self.checkpoint_every >= 1, "checkpoint_every must be at least 1")
        need(self.match_samples >= 0, "match_samples must not be negative")
        need(
            self.match_window_tokens >= 32 and self.match_max_tokens >= 1,
            "match_window_tokens must be >= 32 and match_max_tokens >= 1",
        )
        # Cross-field: held-out data is what evaluation and early stopping read.
        if self.holdout == 0:
            need(self.patience == 0, "early stopping (patience > 0) needs holdout > 0")
            need(self.match_samples == 0, "next-line exact match (match_samples) needs holdout > 0")
        if self.patience > 0:
            need(self.eval_every > 0, "early stopping (patience > 0) needs eval_every > 0")
        if problems:
            raise CodetailorError("invalid config: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)

    @classmethod
    def from_dict(
        cls, values: dict[str, Any], base: FinetuneConfig | None = None
    ) -> FinetuneConfig:
        """`base` (default: the defaults) with `values` on top, coerced to each field's type."""
        hints = typing.get_type_hints(cls)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise CodetailorError(
                f"unknown config key(s) {', '.join(unknown)}; "
                f"known keys: {', '.join(sorted(known))}"
            )
        merged = (base or cls()).to_dict()
        for key, value in values.items():
            merged[key] = _coerce(key, value, hints[key])
        return cls(**merged)


def parse_setting(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from `--set`, with VALUE typed as the field KEY is.

    A list takes comma-separated items (`extensions=.py,.pyi`) or YAML's
    `[a, b]`; an optional field takes `none` (or nothing) for None. An unknown
    key or a value of the wrong type is one CodetailorError naming what fits.
    """
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise CodetailorError(f"--set expects KEY=VALUE, got {text!r}; e.g. --set lora_r=8")
    hints = typing.get_type_hints(FinetuneConfig)
    if key not in {f.name for f in fields(FinetuneConfig)}:
        raise CodetailorError(
            f"--set {key}: unknown config key; valid keys: {', '.join(config_keys())}"
        )
    hint, raw = hints[key], raw.strip()
    value: Any = raw
    if type(None) in typing.get_args(hint) and raw.lower() in {"", "none", "null"}:
        value = None
    elif typing.get_origin(hint) is list:
        inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        value = [item.strip().strip("'\"") for item in inner.split(",") if item.strip()]
    try:
        return key, _coerce(key, value, hint)
    except CodetailorError as exc:
        raise CodetailorError(f"--set {text}: {exc}") from None


def config_keys() -> list[str]:
    """Every config key, in the dataclass's order."""
    return [f.name for f in fields(FinetuneConfig)]


def keys_help(width: int = 100) -> str:
    """Every config key with its type, default and help: the list `--help` prints."""
    import textwrap

    hints = typing.get_type_hints(FinetuneConfig)
    lines = ["config keys (set with --set KEY=VALUE, or in a --config YAML file):"]
    for f in fields(FinetuneConfig):
        default = f.default_factory() if callable(f.default_factory) else f.default
        kind = _type_name(hints[f.name])
        entry = f"{f.name} ({kind}, default {default!r}): {f.metadata['help']}"
        lines += textwrap.wrap(entry, width, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def _type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        return "list"
    if type(None) in typing.get_args(hint) and args:
        return f"{args[0].__name__} or none"
    return getattr(hint, "__name__", str(hint))


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's mapping; a CodetailorError for a missing or malformed file."""
    import yaml

    path = Path(path)
    if not path.is_file() and (CONFIG_DIR / path).is_file():
        path = CONFIG_DIR / path  # a bundled recipe by name, e.g. `--config debug.yaml`
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise CodetailorError(f"cannot read config {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CodetailorError(
            f"config {path} is not valid YAML: {str(exc).splitlines()[0]}"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CodetailorError(f"config {path} must be a mapping of keys to values")
    return data


def dump_yaml(config: FinetuneConfig) -> str:
    """The resolved config as YAML, each key preceded by its help as a comment."""
    import yaml

    lines = []
    for f in fields(config):
        value = yaml.safe_dump({f.name: getattr(config, f.name)}, default_flow_style=True)
        lines.append(f"# {f.metadata['help']}\n{value.strip().strip('{}')}")
    return "\n".join(lines) + "\n"


def _coerce(key: str, value: Any, hint: Any) -> Any:
    """Turn a YAML or command-line value into the field's type (YAML reads 3e-4 as a string)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    optional = type(None) in typing.get_args(hint)
    target = args[0] if optional and args else hint
    if value is None:
        if optional:
            return None
        raise CodetailorError(f"config key {key} must not be empty")
    origin = typing.get_origin(target)
    try:
        if origin is list:
            items = [value] if isinstance(value, str) else list(value)
            return [str(v) for v in items]
        if target is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in {"true", "yes", "1", "on"}:
                return True
            if str(value).lower() in {"false", "no", "0", "off"}:
                return False
            raise ValueError(value)
        if target is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if target is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        name = getattr(target, "__name__", str(target))
        raise CodetailorError(f"config key {key} must be {name}, got {value!r}") from None
