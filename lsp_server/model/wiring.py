"""The parts the factory (factory.py) assembles completers from.

The prompt format a model and its adapter call for (`choose_format`); the local
backend over the loaded weights (`local_backend`); the engine that selects its
adapter on a base model several adapters share (`AdapterEngine`); and, for an
OpenAI-compatible server, the tokenizer alone (`load_tokenizer`) and the remote
completer (`build_remote_completer`), which sends the prompts built here.
Callers go through the factory; these are its parts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_server.completion.completer import Completer
from lsp_server.completion.prompt import PromptFormat, detect_format, get_format
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import read_meta
from lsp_server.model.engine import Backend, Engine, Generation, PrefixCache
from lsp_server.model.loading import (
    AdapterInfo,
    LoadedModel,
    converted_dir,
    resolve_model,
)
from lsp_server.model.resident import ResidentAdapters
from lsp_server.spec import AdapterRef


def tokenizer_special_tokens(tokenizer: Any) -> list[str]:
    """Special and added tokens: FIM markers are often added tokens, not 'special' ones."""
    tokens = list(getattr(tokenizer, "all_special_tokens", []))
    tokens.extend(tokenizer.get_added_vocab())
    return tokens


def choose_format(loaded: LoadedModel, override: str | None = None) -> PromptFormat:
    """The user's override, else the adapter's recorded format, else the tokenizer's own."""
    recorded = loaded.adapter.prompt_format if loaded.adapter else None
    return pick_format(override, recorded, loaded.tokenizer)


def pick_format(override: str | None, recorded: str | None, tokenizer: Any) -> PromptFormat:
    """`override`, else `recorded` (the adapter's), else the tokenizer's own format.

    A `learned` format (markers the base model was never trained on) is refused unless
    the adapter records it: the bare model would only be confused by the suffix."""
    name = override or recorded
    if not name:
        return detect_format(tokenizer_special_tokens(tokenizer))
    fmt = _named_format(name)
    if fmt.learned and name != recorded:
        raise CodetailorError(
            f"prompt format '{name}' uses markers only an adapter trained on them knows, and "
            "this model has no such adapter; train one with `codetailor finetune`"
        )
    return fmt


def training_format(loaded: LoadedModel, override: str | None = None) -> PromptFormat:
    """The format `finetune` teaches: the override (a named `prompt_format`, or the format
    of the adapter the run starts from: finetune.train.inherited_format), else the
    tokenizer's own (FIM where it has one). A learned format (`smollm2-fim`, which
    `prompt.trainable_format` names for SmolLM2's tokenizer) is never chosen from the
    tokenizer alone: a repository's short run cannot teach it from zero (HumanEval line
    infill fell from 0.27 to 0.035 through such a run, docs/benchmarks.md), and an
    adapter that records it sends every completion the suffix."""
    if override:
        return _named_format(override)
    return detect_format(tokenizer_special_tokens(loaded.tokenizer))


def _named_format(name: str) -> PromptFormat:
    try:
        return get_format(name)
    except ValueError as exc:
        raise CodetailorError(str(exc)) from None


class AdapterEngine:
    """One adapter's engine on a base model that several adapters share.

    It selects its adapter before each call, under the adapters' lock, and keeps
    its own KV prefix cache: an entry computed under one adapter never answers a
    request for another. Once its adapter is replaced (`replaced_by`), calls go to
    the engine that replaced it, so a request already under way is not lost.
    """

    def __init__(self, engine: Engine, resident: ResidentAdapters, adapter: str | None) -> None:
        self.engine = engine
        self.resident = resident
        self.adapter = adapter
        self.replaced_by: AdapterEngine | None = None

    @property
    def cache(self) -> PrefixCache:
        return self.engine.cache

    def current(self) -> AdapterEngine:
        """This engine, or the newest one that replaced it."""
        engine = self
        while engine.replaced_by is not None:
            engine = engine.replaced_by
        return engine

    def generate(self, prompt: Sequence[int], **options: Any) -> Generation:
        target = self.current()
        with self.resident.lock:
            self.resident.select(target.adapter)
            return target.engine.generate(prompt, **options)

    def prefill(self, prompt: Sequence[int], *args: Any, **options: Any) -> int:
        target = self.current()
        with self.resident.lock:
            self.resident.select(target.adapter)
            return target.engine.prefill(prompt, *args, **options)


def local_backend(loaded: LoadedModel, compile: str, *, window_tokens: int) -> Backend:
    """The engine backend over `loaded`'s weights (shared by every adapter's engine);
    `compile` (auto, on, off) runs the decode steps compiled (`model.compiled`).
    Adapters loaded or unmerged later change the modules, and the steps recompile."""
    from lsp_server.model.backend import eos_ids

    eos = eos_ids(loaded.tokenizer, loaded.model)
    return backend_over(
        loaded.model, eos, loaded.device, loaded.dtype, compile, window_tokens=window_tokens
    )


def backend_over(
    model: Any,
    eos: Iterable[int],
    device: str,
    dtype: str,
    compile: str,
    *,
    window_tokens: int,
) -> Backend:
    """The backend over `model` on `device`: compiled steps where `compile` says so and the
    weights are not quantized, else eager (also for a model built in code, without a
    tokenizer: the GPU benchmark's randomly initialised one)."""
    from lsp_server.model.backend import TransformersBackend

    if compile == "off" or dtype in ("int8", "int4"):  # quantized layers: eager
        return TransformersBackend(model, eos)
    from lsp_server.model.compiled import CompiledBackend, choose_compile

    if not choose_compile(compile, device):
        return TransformersBackend(model, eos)
    # Room for the window, a completion and some typing before a cache grows.
    compiled = CompiledBackend(model, eos, capacity=window_tokens + 512)
    compiled.warm()  # compile now, on the loading thread, not at the first request
    return compiled


@dataclass(frozen=True)
class RemoteModel:
    """What stands for the loaded model when a remote server generates: the local tokenizer
    and the names sent, with the facts `codetailor.status` reports."""

    name: str  # what the server is asked for in `model`: the adapter's name or the base's
    base: str
    tokenizer: Any
    url: str
    adapter: AdapterInfo | None = None
    load_seconds: float = 0.0
    dtype: str = "remote"

    @property
    def device(self) -> str:
        return f"remote {self.url}"


def load_tokenizer(spec: str | None, *, trust_remote_code: bool = False) -> Any:
    """The tokenizer of a `--model` spec, without loading (or converting) the weights."""
    from transformers import AutoTokenizer

    source = resolve_model(spec)
    try:
        if source.kind in ("alias", "gguf"):
            assert source.path is not None
            converted = converted_dir(source.path)
            if (converted / "config.json").is_file():
                return AutoTokenizer.from_pretrained(converted)
            return AutoTokenizer.from_pretrained(source.path.parent, gguf_file=source.path.name)
        where = source.path if source.path is not None else source.spec
        return AutoTokenizer.from_pretrained(where, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - whatever transformers raised, one line
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:300]
        raise CodetailorError(f"cannot load the tokenizer of '{source.spec}': {first}") from exc


def remote_adapter(adapter: AdapterRef | None) -> tuple[str | None, AdapterInfo | None]:
    """The name to send for `adapter` (its registered name, else its folder's name; a name
    that resolved to no folder as given), and the folder's metadata when it is one."""
    if adapter is None:
        return None, None
    path = Path(adapter.path).expanduser()
    if not path.is_dir():
        return adapter.name or adapter.path, None
    info = AdapterInfo(path=path, meta=read_meta(path))
    return adapter.name or path.resolve().name, info


def build_remote_completer(
    url: str,
    *,
    model: str | None = None,
    adapter: AdapterRef | None = None,
    prompt_format: str | None = None,
    trust_remote_code: bool = False,
    window_tokens: int = 4096,
    tokenizer: Any = None,
    **engine_options: Any,
) -> tuple[Completer, RemoteModel]:
    """A Completer whose engine is the OpenAI-compatible server at `url`.

    The prompt is built here, with the tokenizer of `model` (the base model the
    server runs), in the adapter's recorded format or the tokenizer's own. The
    server is asked for the adapter's name when there is one, else for `model`
    as given (the name `vllm serve` was given, or its `--served-model-name`).
    Token healing is off: the API cannot restrict the first generated token.
    `tokenizer`: the base model's, already loaded (one per adapter would be waste).
    """
    from lsp_server.model.loading import DEFAULT_MODEL
    from lsp_server.model.remote import RemoteEngine

    started = time.monotonic()
    if tokenizer is None:
        tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
    adapter_name, info = remote_adapter(adapter)
    fmt = pick_format(prompt_format, info.prompt_format if info else None, tokenizer)
    vocab = tokenizer.get_vocab()
    stops = [t for t in fmt.stop_tokens if t in vocab]
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    base = model or DEFAULT_MODEL
    sent = adapter_name or base
    engine = RemoteEngine(
        url,
        tokenizer,
        model=sent,
        stop_strings=stops,
        window_tokens=window_tokens,
        **engine_options,
    )
    completer = Completer(
        engine,
        tokenizer,
        fmt,
        window_tokens=window_tokens,
        token_healing=False,
        window_limit=engine.window_for,  # the prompt the engine's prefill fits in time
    )
    facts = RemoteModel(
        sent, base, tokenizer, url, adapter=info, load_seconds=time.monotonic() - started
    )
    return completer, facts
