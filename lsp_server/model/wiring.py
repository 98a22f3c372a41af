"""Wire a model into a ready `Completer`: the prompt format, then an engine.

`build_completer` runs the loaded weights locally; `build_remote_completer` sends the
prompts it builds with the local tokenizer to an OpenAI-compatible server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_server.completion.completer import Completer
from lsp_server.completion.prompt import PromptFormat, detect_format, get_format
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import read_meta
from lsp_server.model.engine import Backend, Engine, PrefixCache
from lsp_server.model.loading import (
    AdapterInfo,
    LoadedModel,
    converted_dir,
    resolve_model,
)


def tokenizer_special_tokens(tokenizer: Any) -> list[str]:
    """Special and added tokens: FIM markers are often added tokens, not 'special' ones."""
    tokens = list(getattr(tokenizer, "all_special_tokens", []))
    tokens.extend(tokenizer.get_added_vocab())
    return tokens


def choose_format(loaded: LoadedModel, override: str | None = None) -> PromptFormat:
    """The user's override, else the adapter's recorded format, else the tokenizer's own."""
    name = override or (loaded.adapter.prompt_format if loaded.adapter else None)
    if name:
        try:
            return get_format(name)
        except ValueError as exc:
            raise CodetailorError(str(exc)) from None
    return detect_format(tokenizer_special_tokens(loaded.tokenizer))


def build_completer(
    loaded: LoadedModel,
    *,
    prompt_format: str | None = None,
    window_tokens: int | None = None,
    reuse: bool = True,
    compile: str = "off",
) -> Completer:
    """A Completer over `loaded`, with KV prefix reuse unless `reuse` is False;
    `compile` (auto, on, off) runs the decode steps compiled (`model.compiled`)."""
    from lsp_server.model.backend import TransformersBackend, eos_ids

    fmt = choose_format(loaded, prompt_format)
    if window_tokens is None:
        # CPU prefill is the bottleneck; a GPU affords a wider view of the file.
        window_tokens = 1024 if loaded.device == "cpu" else 4096
    eos = eos_ids(loaded.tokenizer, loaded.model)
    backend: Backend = TransformersBackend(loaded.model, eos)
    if compile != "off" and loaded.dtype != "int8":  # dynamic int8 layers do not compile
        from lsp_server.model.compiled import CompiledBackend, choose_compile

        if choose_compile(compile, loaded.device):
            # Room for the window, a completion and some typing before a cache grows.
            compiled = CompiledBackend(loaded.model, eos, capacity=window_tokens + 512)
            compiled.warm()  # compile now, on the loading thread, not at the first request
            backend = compiled
    engine = Engine(backend, cache=PrefixCache(), reuse=reuse)
    return Completer(engine, loaded.tokenizer, fmt, window_tokens=window_tokens)


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


def remote_adapter(adapter: str | None) -> tuple[str | None, AdapterInfo | None]:
    """The name to send for `adapter` (a registered name, or a folder: its registered name,
    else the folder's name), and the folder's metadata when it is one."""
    if not adapter:
        return None, None
    path = Path(adapter).expanduser()
    if not path.is_dir():
        return adapter, None
    from lsp_server.model import registry

    entry = registry.find_by_path(path)
    info = AdapterInfo(path=path, meta=read_meta(path))
    return (entry.name if entry else path.resolve().name), info


def build_remote_completer(
    url: str,
    *,
    model: str | None = None,
    adapter: str | None = None,
    prompt_format: str | None = None,
    trust_remote_code: bool = False,
    window_tokens: int = 4096,
    **engine_options: Any,
) -> tuple[Completer, RemoteModel]:
    """A Completer whose engine is the OpenAI-compatible server at `url`.

    The prompt is built here, with the tokenizer of `model` (the base model the
    server runs), in the adapter's recorded format or the tokenizer's own. The
    server is asked for the adapter's name when there is one, else for `model`
    as given (the name `vllm serve` was given, or its `--served-model-name`).
    Token healing is off: the API cannot restrict the first generated token.
    """
    from lsp_server.model.loading import DEFAULT_MODEL
    from lsp_server.model.remote import RemoteEngine

    started = time.monotonic()
    tokenizer = load_tokenizer(model, trust_remote_code=trust_remote_code)
    adapter_name, info = remote_adapter(adapter)
    name = prompt_format or (info.prompt_format if info else None)
    try:
        fmt = get_format(name) if name else detect_format(tokenizer_special_tokens(tokenizer))
    except ValueError as exc:
        raise CodetailorError(str(exc)) from None
    vocab = tokenizer.get_vocab()
    stops = [t for t in fmt.stop_tokens if t in vocab]
    if tokenizer.eos_token:
        stops.append(tokenizer.eos_token)
    base = model or DEFAULT_MODEL
    sent = adapter_name or base
    engine = RemoteEngine(url, tokenizer, model=sent, stop_strings=stops, **engine_options)
    completer = Completer(engine, tokenizer, fmt, window_tokens=window_tokens, token_healing=False)
    facts = RemoteModel(
        sent, base, tokenizer, url, adapter=info, load_seconds=time.monotonic() - started
    )
    return completer, facts
