"""Starting the LoRA from an adapter `finetune` made, instead of from zero.

`init_adapter` (a config key) names the folder; unset, a run starts from the
general adapter shipped for its base model where there is one
(`lsp_server.model.shipped`: the default model's teaches it fill-in-the-middle, which
a repository's short run could not teach from zero), and `none` starts from zero; an
incremental run (`finetune.incremental`) starts from the adapter it updates. Unless
`prompt_format` is named, a run teaches the format of the adapter it starts from. The weights are
only worth starting from when they mean the same thing in this run: the same
base weights (the fingerprint `codetailor.json` records), the same LoRA shape
(rank, alpha, target modules) and the same prompt format; anything else is
refused with one line saying which differs. The adapter written records what it
started from (`started_from`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import AdapterMeta, read_meta

WEIGHTS = "adapter_model.safetensors"
FROM_ZERO = "none"  # init_adapter: no adapter to start from, not even the general one


def general_start(cfg: FinetuneConfig) -> tuple[Path, AdapterMeta] | None:
    """The general adapter shipped for `cfg.model`, where `init_adapter` is unset and one
    ships (its folder and metadata); None otherwise."""
    from lsp_server.model.shipped import shipped_adapter

    if cfg.init_adapter:
        return None
    ref = shipped_adapter(cfg.model)
    if ref is None:
        return None
    folder = Path(ref.path)
    return folder, read_start(folder)


def read_start(folder: str | Path) -> AdapterMeta:
    """The metadata of the adapter to start from; one line where it is no such adapter."""
    path = Path(folder).expanduser()
    if not (path / WEIGHTS).is_file() or not (path / "adapter_config.json").is_file():
        raise CodetailorError(
            f"init_adapter {path}: not an adapter folder (no {WEIGHTS} and adapter_config.json)"
        )
    meta = read_meta(path)
    if meta is None:
        raise CodetailorError(
            f"init_adapter {path}: no codetailor.json, so its base model and prompt format are "
            "unknown; start from an adapter that codetailor finetune wrote"
        )
    return meta


def lora_shape(cfg: FinetuneConfig) -> dict[str, Any]:
    """The LoRA settings an adapter's weights depend on, as `codetailor.json` records them."""
    return {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "target_modules": list(cfg.target_modules)}


def shape_mismatch(meta: AdapterMeta, cfg: FinetuneConfig) -> str | None:
    """What differs between the adapter's LoRA shape and this run's (None: nothing)."""
    recorded = meta.training.get("lora") or {}
    wanted = lora_shape(cfg)
    for key, label in (("r", "rank"), ("alpha", "alpha"), ("target_modules", "target modules")):
        have = recorded.get(key)
        if have is None:
            return f"its LoRA {label} is not recorded"
        if (list(have) if isinstance(have, list) else float(have)) != (
            wanted[key] if isinstance(wanted[key], list) else float(wanted[key])
        ):
            return f"LoRA {label} {have!r}, this run's is {wanted[key]!r}"
    return None


def check_start(
    folder: str | Path, meta: AdapterMeta, cfg: FinetuneConfig, fingerprint: str, fmt: Any
) -> None:
    """Refuse, in one line, an adapter whose weights would mean something else here:
    another base model (by fingerprint), another LoRA shape, another prompt format."""
    where = f"init_adapter {Path(folder).expanduser()}"
    base = meta.base_model
    if base is None or base.fingerprint is None:
        raise CodetailorError(f"{where}: its base model's fingerprint is not recorded")
    if base.fingerprint != fingerprint:
        raise CodetailorError(
            f"{where} was trained on another base model ({base.name}, fingerprint "
            f"{base.fingerprint[:12]}; this run's {cfg.model} is {fingerprint[:12]})"
        )
    shape = shape_mismatch(meta, cfg)
    if shape is not None:
        raise CodetailorError(f"{where}: {shape}; set the same LoRA settings to start from it")
    if meta.prompt_format != fmt.name or meta.prompt_format_version not in (None, fmt.version):
        raise CodetailorError(
            f"{where} learned prompt format {meta.prompt_format} "
            f"v{meta.prompt_format_version}; this run uses {fmt.name} v{fmt.version} "
            "(set prompt_format to match)"
        )


def load_start(peft_model: Any, folder: str | Path) -> None:
    """Put the adapter's LoRA weights into `peft_model` (wrapped with the same shape)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(folder).expanduser() / WEIGHTS))
    result = set_peft_model_state_dict(peft_model, weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise CodetailorError(
            f"init_adapter {folder}: {len(missing)} LoRA weights missing (e.g. {missing[0]})"
        )


def started_from(folder: str | Path, meta: AdapterMeta) -> dict[str, Any]:
    """What the new adapter's metadata records about the adapter it started from."""
    return {
        "path": str(Path(folder).expanduser().resolve()),
        "created": meta.created,
        "repository": meta.repository.get("name"),
        "commit": meta.repository.get("commit"),
        "tasks": list(meta.tasks),
        "heldout_loss": (meta.evaluation.get("after") or {}).get("heldout_loss"),
    }
