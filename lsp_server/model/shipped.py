"""The general adapters that ship inside the package, one per base model at most.

The default model (SmolLM2-135M) has no fill-in-the-middle tokens; the package
carries a LoRA adapter that teaches it the learned `smollm2-fim` format, trained
on the Python files of a few public repositories (`make general-adapter`,
finetune/general.py). It lives in `lsp_server/adapters/<name>/`: the PEFT files
in half precision, `codetailor.json`, and `SOURCES.md` with each source
repository, its commit and its licence.

`shipped_adapter(base)` says which shipped adapter serves a `--model` spec:
None when the base is not the model it was made for, or when its folder is
absent (a checkout before the adapter was built) or incomplete. It is the
fallback wherever `adapter` is `auto` (serve, the LSP settings) or not given
(complete, eval): a repository's own adapter wins over it, `none` turns it off.

Its base fingerprint can only be checked once the base weights are loaded;
`refusal` does that in the model layer (factory.py, loading.py): an adapter made
for other weights of the same model is refused with one warning line and the
base model serves. Pure apart from reading its folder: no torch.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import check_prompt_format, read_meta
from lsp_server.spec import AdapterRef

log = logging.getLogger("codetailor.models")

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"
# The base model's name (`LoadedModel.name` of its `--model` spec) -> its shipped adapter.
SHIPPED: dict[str, Path] = {"smollm2-135m": ADAPTERS / "smollm2-135m-general"}
MAX_BYTES = 20 * 1024 * 1024  # a shipped adapter's folder, all files together
REQUIRED = ("adapter_config.json", "adapter_model.safetensors", "codetailor.json")
NAME = "general"  # the registered-name slot of its AdapterRef: what status rows show

_warned: set[str] = set()


def shipped_adapter(base: str | None) -> AdapterRef | None:
    """The shipped adapter that serves the base model `base` (a `--model` spec; None: the
    default model), or None: another base, no folder (not built yet), an incomplete one,
    or one whose metadata names another base (said once, at WARNING)."""
    from lsp_server.model.registry import base_name, same_base

    name = base_name(base)
    folder = SHIPPED.get(name)  # by exact name: a hub model of the same family is not it
    if folder is None or not folder.is_dir():
        return None
    missing = [f for f in REQUIRED if not (folder / f).is_file()]
    if missing:
        _warn_once(f"the general adapter {folder} lacks {', '.join(missing)}: serving the base")
        return None
    try:
        meta = read_meta(folder)
    except CodetailorError as exc:
        _warn_once(f"the general adapter is unusable ({exc}): serving the base model")
        return None
    trained = meta.base_model.name if meta and meta.base_model else None
    if not trained or not same_base(trained, name):
        _warn_once(
            f"the general adapter {folder} was made for base model '{trained}', not "
            f"'{name}': serving the base model"
        )
        return None
    return AdapterRef(str(folder), NAME)


def is_shipped(path: str | Path | None) -> bool:
    """Whether `path` is the folder of a shipped adapter."""
    if path is None:
        return False
    where = Path(path).expanduser().resolve()
    return any(where == folder.resolve() for folder in SHIPPED.values())


def refusal(path: str | Path | None, base: str, fingerprint: str) -> str | None:
    """Why the shipped adapter at `path` must not serve the loaded base model (`base`: its
    name, `fingerprint`: `loading.model_fingerprint` of its weights), said once at
    WARNING; None when it may, or when `path` is no shipped adapter (those are checked
    as every adapter is, and refused with an error)."""
    if not is_shipped(path):
        return None
    assert path is not None
    try:
        meta = read_meta(Path(path))
        if meta is not None:
            check_prompt_format(meta, Path(path))  # a layout this server no longer builds
    except CodetailorError as exc:
        why = str(exc)
    else:
        recorded = meta.base_model.fingerprint if meta and meta.base_model else None
        if recorded is None or recorded == fingerprint:
            return None
        why = (
            f"the general adapter was trained on other weights of '{base}' (fingerprint "
            f"{recorded}, these are {fingerprint})"
        )
    _warn_once(f"{why}: serving the base model; rebuild it with `make general-adapter`")
    return why


def folder_bytes(folder: Path) -> int:
    """The size of every file in `folder`, subfolders included."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def check_size(folder: Path, limit: int | None = None) -> int:
    """The folder's size in bytes; a CodetailorError (one line) when it is over `limit`
    (default MAX_BYTES)."""
    limit = MAX_BYTES if limit is None else limit
    size = folder_bytes(folder)
    if size > limit:
        raise CodetailorError(
            f"the general adapter in {folder} is {size / 2**20:.1f} MiB, over the "
            f"{limit / 2**20:.0f} MiB a shipped adapter may take; lower lora_r or "
            "target fewer modules in finetune/configs/general-smollm2.yaml"
        )
    return size


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        log.warning("%s", message)
