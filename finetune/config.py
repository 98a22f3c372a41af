"""The configuration of both trainings: typed dataclasses with help on every field.

`FinetuneConfig` is `codetailor finetune`'s (LoRA on the repository's code);
`PreferenceConfig` is `codetailor finetune --feedback`'s (preference tuning on the
feedback log). Both are `Config`s, so one set of functions handles them: values
come from the dataclass defaults, then a YAML file (`--config`, training only),
then the command line (`parse_setting` reads `--set KEY=VALUE` typed as the
field is), in that order; `validate` collects every problem at once, so a user
fixes them all in one go; `print_resolved` shows the resolved config and
`to_dict`/`dump_yaml` save it beside the adapter; `keys_help` lists the keys.
"""

from __future__ import annotations

import sys
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from lsp_server.errors import CodetailorError

CONFIG_DIR = Path(__file__).parent / "configs"

C = TypeVar("C", bound="Config")

NEXT_EDIT_WINDOWS = ("auto", "cpu", "gpu")
INCREMENTAL_MODES = ("auto", "on", "off")  # finetune.incremental's AUTO, ON, OFF


def _f(default: Any, help: str) -> Any:  # noqa: A002 - mirrors argparse's name
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class Config:
    """What every training's config shares: a dict to save, help per field, and typed
    values from YAML or the command line on top of a base."""

    def validate(self: C) -> C:
        """Return self, or raise one CodetailorError listing every problem and its fix."""
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def help(cls, name: str) -> str:
        return next(f.metadata["help"] for f in fields(cls) if f.name == name)

    @classmethod
    def from_dict(cls: type[C], values: dict[str, Any], base: C | None = None) -> C:
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

    def __or__(self: C, changes: dict[str, Any]) -> C:
        """A copy with `changes` on top, typed as `from_dict` types them."""
        return type(self).from_dict(changes, self)


@dataclass
class FinetuneConfig(Config):
    """Everything one `codetailor finetune` run depends on.

    The defaults suit the default model on a laptop CPU (a step is 256 tokens);
    `configs/qwen2.5-coder-1.5b.yaml` shows GPU-sized settings.
    """

    # What to train on, and where the adapter goes.
    repo: str = _f("", "the repository (a git checkout or a plain folder) to train on")
    out: str = _f("", "the adapter folder to write; created, or replaced if it holds an adapter")
    model: str = _f("smollm2-135m", "base model: smollm2-135m, a Hugging Face id, dir or .gguf")
    prompt_format: str | None = _f(
        None, "FIM template name; default: the tokenizer's own (smollm2-fim: taught, not default)"
    )
    device: str = _f("auto", "auto, cpu, cuda[:N] or mps (under accelerate: that process's)")
    dtype: str = _f(
        "auto",
        "auto (bf16 on a GPU or on a CPU with bf16 hardware, else fp32), float32, bfloat16 "
        "or float16",
    )
    trust_remote_code: bool = _f(False, "allow a hub model's own Python code")
    seed: int = _f(0, "seed for LoRA initialisation, FIM spans, data order and dropout")

    # Where training starts, and how long it may take.
    init_adapter: str | None = _f(
        None,
        "start the LoRA from this adapter's weights (a folder finetune wrote, same base model, "
        "LoRA settings and prompt format); unset: the general adapter shipped for the base "
        "model where one fits; none: from zero; an incremental run starts from the one it updates",
    )
    incremental: str = _f(
        "auto",
        "auto: where --out holds this repository's adapter, train on what is new since it "
        "(plus replay) starting from it; on: insist (--incremental); off: from scratch",
    )
    replay_share: float = _f(
        0.25, "incremental runs: share of the training tokens replayed from the old data"
    )
    time_budget_minutes: float | None = _f(
        None,
        "minutes for the whole run (data, training, final figures): the steps are planned "
        "to fit; none: 25 on a CPU, no limit on a GPU; 0: no limit",
    )

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
    fim_holes: int = _f(1, "FIM examples cut from each chunk chosen for FIM, each its own hole")
    seq_len: int = _f(256, "tokens per packed training sequence")

    # Next edits from the repository's git history (lsp_server.repo.history's miner).
    next_edit: bool = _f(True, "also learn next edits from the git history, where it has one")
    next_edit_share: float = _f(
        0.5, "share of the training tokens from next-edit examples (the rest: the files)"
    )
    next_edit_max_tokens: int = _f(
        300_000, "most next-edit training tokens: newest commits first until this many"
    )
    next_edit_partial_rate: float = _f(
        0.25, "share of edit-due examples shown with the edit partly typed (the cursor in it)"
    )
    next_edit_window: str = _f(
        "auto", "windows as the server that uses it asks: cpu (5 lines), gpu (21), auto (device)"
    )
    next_edit_seq_len: int = _f(
        1024, "most tokens per next-edit sequence; a longer example is left out"
    )

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
        need(self.fim_holes >= 1, f"fim_holes must be at least 1, got {self.fim_holes}")
        need(self.seq_len >= 16, f"seq_len must be at least 16, got {self.seq_len}")
        problems += self._next_edit_problems()
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
        problems += self._start_problems()
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

    def _start_problems(self) -> list[str]:
        budget = self.time_budget_minutes
        checks = (
            (
                self.incremental in INCREMENTAL_MODES,
                _choice("incremental", self.incremental, INCREMENTAL_MODES),
            ),
            (0.0 <= self.replay_share < 1.0, "replay_share must be in [0, 1)"),
            (budget is None or budget >= 0, "time_budget_minutes must not be negative (0: none)"),
        )
        return [message for ok, message in checks if not ok]

    def _next_edit_problems(self) -> list[str]:
        window = self.next_edit_window
        checks = (
            (0.0 <= self.next_edit_share < 1.0, "next_edit_share must be in [0, 1)"),
            (self.next_edit_max_tokens >= 0, "next_edit_max_tokens must not be negative"),
            (0.0 <= self.next_edit_partial_rate <= 1.0, "next_edit_partial_rate must be in [0, 1]"),
            (window in NEXT_EDIT_WINDOWS, _choice("next_edit_window", window, NEXT_EDIT_WINDOWS)),
            (self.next_edit_seq_len >= 64, "next_edit_seq_len must be at least 64"),
        )
        return [message for ok, message in checks if not ok]


# The choices of PreferenceConfig's `reference` and `anchor_kind`.
REFERENCES = ("base", "start")
ANCHOR_KINDS = ("tokens", "kl")
SOURCES = ("editor", "simulated")


@dataclass
class PreferenceConfig(Config):
    """Everything one `codetailor finetune --feedback` run depends on.

    Every default runs on a CPU; together they are the setting measured in
    docs/benchmarks.md ("Learning from feedback").
    """

    # What to tune, and on which feedback.
    repo: str = _f("", "the repository whose feedback log and held-out files are used")
    adapter: str = _f("", "the adapter folder to tune; replaced only when the gate passes")
    device: str = _f("auto", "auto, cpu, cuda[:N] or mps")
    dtype: str = _f("auto", "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16 or float16")
    seed: int = _f(0, "seed for the feedback split, the data order and the anchor's blocks")
    source: str | None = _f(None, "only events from this source: editor or simulated")
    log_dir: str | None = _f(None, "the feedback log's folder; default: the repository's")
    min_examples: int = _f(8, "refuse a log with fewer suggestions than this")
    heldout_feedback: float = _f(0.2, "share of the log's places held out for the gate")
    max_prompt_tokens: int = _f(96, "the prompt's last tokens each example is scored with")

    # The preference loss.
    beta: float = _f(0.1, "strength of DPO's and KTO's pull towards the reference")
    reference: str = _f("base", "DPO's and KTO's reference: base (adapter off) or start")
    kto_weight: float = _f(1.0, "weight of KTO on unpaired labels, against DPO on pairs")
    desirable_weight: float = _f(1.0, "KTO's weight on kept suggestions")
    undesirable_weight: float = _f(1.0, "KTO's weight on rejected suggestions")
    sft_weight: float = _f(1.0, "weight of the token loss on what the user kept or wrote")
    preference_weight: float = _f(1.0, "weight of DPO + KTO + SFT together; 0 = the anchor alone")

    # The anchor on the repository's own code.
    anchor_weight: float = _f(1.0, "weight of the anchor's loss on the repository's blocks")
    anchor_kind: str = _f("tokens", "tokens (their token loss) or kl (KL from the start)")
    anchor_rows: int = _f(2, "training blocks of the repository per step")
    anchor_seq_len: int = _f(256, "tokens per anchor block, at most (the recipe's seq_len)")

    # Optimisation.
    lr: float = _f(2e-4, "learning rate (AdamW)")
    epochs: float = _f(1.0, "passes over the feedback (ignored when max_steps is set)")
    max_steps: int | None = _f(None, "optimizer steps to run; overrides epochs")
    batch_size: int = _f(8, "examples (pairs or unpaired) per optimizer step")

    # The gate, and what is written.
    loss_tolerance: float = _f(0.0, "relative rise of held-out loss the gate lets pass")
    repo_eval: dict[str, Any] = _f({}, "changes to the adapter's recipe for the gate's measure")
    candidate: str | None = _f(None, "also write the tuned adapter here, kept or not")

    def validate(self) -> PreferenceConfig:
        """Return self, or raise one CodetailorError listing every problem and its fix."""
        problems = [
            message
            for ok, message in (
                (bool(self.repo), "a repository is required"),
                (bool(self.adapter), "--out (the adapter to tune) is required"),
                (self.reference in REFERENCES, _choice("reference", self.reference, REFERENCES)),
                (
                    self.anchor_kind in ANCHOR_KINDS,
                    _choice("anchor_kind", self.anchor_kind, ANCHOR_KINDS),
                ),
                (self.source in (None, *SOURCES), _choice("source", str(self.source), SOURCES)),
                (0.0 <= self.heldout_feedback < 1.0, "heldout_feedback must be in [0, 1)"),
                (self.lr > 0, f"lr must be positive, got {self.lr}"),
                (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
                (self.max_steps is None or self.max_steps >= 1, "max_steps must be at least 1"),
                (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
                (self.loss_tolerance >= 0, "loss_tolerance must not be negative"),
                (
                    bool(self.preference_weight or self.anchor_weight),
                    "preference_weight and anchor_weight are both 0: nothing to train",
                ),
            )
            if not ok
        ]
        if problems:
            raise CodetailorError("invalid config: " + "; ".join(problems))
        return self


def one_of(name: str, value: str, choices: tuple[str, ...]) -> None:
    """One clear error for a setting outside its choices."""
    if value not in choices:
        raise CodetailorError(_choice(name, value, choices))


def _choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    return f"{name} must be one of {', '.join(choices)}, got {value!r}"


def parse_setting(text: str, config: type[Config] = FinetuneConfig) -> tuple[str, Any]:
    """`KEY=VALUE` from `--set`, with VALUE typed as the field KEY of `config` is.

    A list takes comma-separated items (`extensions=.py,.pyi`) or YAML's
    `[a, b]`; a mapping takes JSON or YAML (`repo_eval={"holdout": 0.2}`); an
    optional field takes `none` (or nothing) for None; a quoted text loses its
    quotes. An unknown key or a value of the wrong type is one CodetailorError
    naming what fits.
    """
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise CodetailorError(f"--set expects KEY=VALUE, got {text!r}; e.g. --set lora_r=8")
    hints = typing.get_type_hints(config)
    if key not in {f.name for f in fields(config)}:
        raise CodetailorError(
            f"--set {key}: unknown config key; valid keys: {', '.join(config_keys(config))}"
        )
    hint = hints[key]
    try:
        return key, _coerce(key, _setting_value(raw.strip(), hint), hint)
    except CodetailorError as exc:
        raise CodetailorError(f"--set {text}: {exc}") from None


def settings_over(config: type[Config], texts: list[str], given: dict[str, Any]) -> dict[str, Any]:
    """The `--set` texts as typed values of `config`'s keys. A key that `given` (the
    command line's own options) also sets is refused rather than resolved by an order
    the user would have to look up."""
    values: dict[str, Any] = {}
    for text in texts:
        key, value = parse_setting(text, config)
        if key in given:
            raise CodetailorError(
                f"--set {key} repeats a value given on the command line; give it once"
            )
        values[key] = value
    return values


def _setting_value(raw: str, hint: Any) -> Any:
    """The command line's text as the value `_coerce` takes for a field of type `hint`."""
    import json

    import yaml

    args = typing.get_args(hint)
    if type(None) in args:
        if raw.lower() in {"", "none", "null"}:
            return None
        hint = next(a for a in args if a is not type(None))
    origin = typing.get_origin(hint)
    if origin is list:
        inner = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        return [item.strip().strip("'\"") for item in inner.split(",") if item.strip()]
    if origin is dict:
        try:
            return json.loads(raw)
        except ValueError:
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError:
                return raw
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return raw[1:-1]
    return raw


def config_keys(config: type[Config] = FinetuneConfig) -> list[str]:
    """Every key of `config`, in the dataclass's order."""
    return [f.name for f in fields(config)]


def keys_help(
    config: type[Config] = FinetuneConfig,
    title: str = "config keys (set with --set KEY=VALUE, or in a --config YAML file):",
    width: int = 100,
) -> str:
    """Every key of `config` with its type, default and help: the list `--help` prints."""
    import textwrap

    hints = typing.get_type_hints(config)
    lines = [title]
    for f in fields(config):
        default = f.default_factory() if callable(f.default_factory) else f.default
        kind = _type_name(hints[f.name])
        entry = f"{f.name} ({kind}, default {default!r}): {f.metadata['help']}"
        lines += textwrap.wrap(entry, width, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)


def print_resolved(config: Config, command: str) -> None:
    """The resolved config on stderr, one key a line, before any work."""
    print(f"{command}: resolved config", file=sys.stderr)
    for key, value in config.to_dict().items():
        print(f"  {key}: {value}", file=sys.stderr)


def _type_name(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is list:
        return "list"
    if typing.get_origin(hint) is dict:
        return "mapping"
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


def dump_yaml(config: Config) -> str:
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
        if origin is dict:
            if not isinstance(value, dict):
                raise ValueError(value)
            return dict(value)
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
