"""A model's packed 4-bit weights (`--dtype int4`, int4.py), kept on disk for the next start.

Packing rounds every linear layer's weight into groups of 32 and reorders it for
the CPU kernel: for SmolLM2-135M about 2,500 small torch operations, 0.3 s on a
quiet machine but ten times that while other processes hold the cores (torch's
threads wait on each other at each operation), the largest part of a warm start
there. Reading the packed bytes back is one copy. So they are kept:

- for a GGUF model, beside its converted weights (`codetailor-int4.safetensors`
  in the converted folder); for a model folder or a Hugging Face id, under
  `$CODETAILOR_HOME/int4/`, never inside the user's folder or the hub cache;
- keyed by what they were made from and how: the format (`FORMAT`), the group
  size and the layers left in float, torch's version and the CPU's vector unit
  (the kernel's packed layout is theirs), and each weights file's name, size and
  modification time; another key packs again (one line at INFO);
- checked when read: the layers and their shapes must be the model's, and a
  CRC-32 of the bytes must match the one written; a damaged or truncated file is
  packed again with one line on stderr, never loaded into a wrong model;
- written to a temporary file in the same folder and renamed, so no reader sees
  half a file; a folder that cannot be written serves without the cache, with one
  line saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import zlib
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from lsp_server.model import int4

log = logging.getLogger("codetailor.models")

FORMAT = 1  # bump when what is stored, or how it is named, changes
FILE = "codetailor-int4.safetensors"
KEY, CRC = "codetailor-int4", "crc32"  # the file's metadata fields


class Source(Protocol):
    """What a model spec resolved to (loading.ModelSource): its kind, name and spec."""

    @property
    def kind(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def spec(self) -> str: ...


def cache_file(source: Source, weights: Path, home: Path) -> Path:
    """Where the packed weights of the model whose weights files are in `weights` live
    (`home`: $CODETAILOR_HOME)."""
    if source.kind in ("alias", "gguf"):  # `weights` is our converted folder: beside it
        return weights / FILE
    digest = hashlib.sha256(str(weights.resolve()).encode()).hexdigest()[:16]
    name = re.sub(r"[^\w.-]+", "-", source.name).strip("-.") or "model"
    return home / "int4" / f"{name}-{digest}.safetensors"


def weights_folder(source: Source, location: str | Path) -> Path | None:
    """The folder holding the model's weights files: the converted folder or the model
    folder, or a hub model's snapshot in the Hugging Face cache (None: not found)."""
    if source.kind != "hub":
        return Path(location)
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(source.spec, "config.json")
    except Exception:  # noqa: BLE001 - not in the cache in a form we can find: no cache
        return None
    return Path(found).parent if isinstance(found, str) else None


def cache_key(weights: Path, dtype: torch.dtype) -> dict[str, Any] | None:
    """What packed weights made from the safetensors files in `weights`, with `dtype`
    scales, by this torch on this CPU are keyed by (None: no weights files there)."""
    files = sorted(p for p in weights.glob("*.safetensors") if p.name != FILE)
    try:
        stats = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    except OSError:
        return None
    if not stats:
        return None
    return {
        "format": FORMAT,
        "group": int4.GROUP,
        "float_layers": list(int4.SKIP),
        "torch": torch.__version__,
        "cpu": torch.backends.cpu.get_cpu_capability(),
        "dtype": str(dtype).removeprefix("torch."),
        "weights": stats,
    }


def quantize_cached(model: nn.Module, source: Source, location: str | Path, home: Path) -> int:
    """`int4.quantize_int4(model)`, with the packed weights read from the cache when it
    holds them for these weights, else packed now and kept there (`location`: where the
    weights were loaded from; `home`: $CODETAILOR_HOME); return how many layers are in
    4 bits."""
    weights = weights_folder(source, location)
    dtype = next(model.parameters()).dtype
    key = cache_key(weights, dtype) if weights is not None else None
    if weights is None or key is None:
        replaced = int4.quantize_int4(model)
        log.info("%d linear layers in 4 bits", replaced)
        return replaced
    path = cache_file(source, weights, home)
    packed = read(path, key, int4.int4_layers(model))
    if packed is not None:
        replaced = int4.quantize_int4(model, packed=packed)
        log.info("%d linear layers in 4 bits (read back, packed at an earlier start)", replaced)
        return replaced
    replaced = int4.quantize_int4(model)
    if write(path, key, int4.packed_weights(model)):
        log.info("%d linear layers in 4 bits (packed now, kept in %s)", replaced, path)
    return replaced


def read(
    path: Path, key: dict[str, Any], layers: dict[str, nn.Linear]
) -> dict[str, int4.Packed] | None:
    """The packed weights kept at `path` for `layers` (by name), or None: none kept, made
    from other weights or another torch (packed again, said at INFO) or damaged (one
    warning line)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:  # the header alone: cheap
            meta = f.metadata() or {}
        if json.loads(meta.get(KEY, "null")) != key:
            log.info("packed 4-bit weights in %s are for other weights or another torch", path)
            return None
        tensors = load_file(str(path))
        problem = _misfit(tensors, layers) or (
            None if str(_crc32(tensors)) == meta.get(CRC) else "its checksum does not match"
        )
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises: pack again
        problem = _first_line(exc)
    if problem is not None:
        log.warning(
            "packed 4-bit weights in %s are damaged (%s): packing them again", path, problem
        )
        return None
    return {name: (tensors[f"{name}.qweight"], tensors[f"{name}.scales"]) for name in layers}


def write(path: Path, key: dict[str, Any], packed: dict[str, int4.Packed]) -> bool:
    """Keep `packed` at `path` under `key` (atomically: a temporary file, then renamed);
    False, with one warning line, where that folder cannot be written."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    for name, (qweight, scales) in packed.items():
        tensors[f"{name}.qweight"], tensors[f"{name}.scales"] = qweight, scales
    data = save(tensors, metadata={KEY: json.dumps(key), CRC: str(_crc32(tensors))})
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging.write_bytes(data)
        os.replace(staging, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            staging.unlink(missing_ok=True)
        log.warning(
            "cannot keep packed 4-bit weights in %s (%s): they are packed again at each start",
            path.parent,
            exc.strerror or exc,
        )
        return False
    return True


def _misfit(tensors: dict[str, torch.Tensor], layers: dict[str, nn.Linear]) -> str | None:
    """Why `tensors` are not the packed weights of `layers`, or None when they are."""
    expected = {f"{n}.{part}" for n in layers for part in ("qweight", "scales")}
    if set(tensors) != expected:
        return f"it holds {len(tensors)} tensors where the model has {len(expected)}"
    for name, layer in layers.items():
        qweight, scales = tensors[f"{name}.qweight"], tensors[f"{name}.scales"]
        out, inner = layer.out_features, layer.in_features
        if qweight.dtype != torch.uint8 or tuple(qweight.shape) != (out, inner // 2):
            return f"{name}'s 4-bit weight has shape {list(qweight.shape)}"
        if scales.dtype != layer.weight.dtype or tuple(scales.shape) != (
            inner // int4.GROUP,
            out,
            2,
        ):
            return f"{name}'s scales have shape {list(scales.shape)}"
    return None


def _crc32(tensors: dict[str, torch.Tensor]) -> int:
    """A CRC-32 over every tensor's bytes, in name order."""
    crc = 0
    for name in sorted(tensors):
        raw = tensors[name].detach().contiguous().view(torch.uint8).numpy()
        crc = zlib.crc32(raw.data, crc)
    return crc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]
