"""Wire a loaded model into a ready `Completer`: prompt format, backend, engine."""

from __future__ import annotations

from typing import Any

from lsp_server.completion.completer import Completer
from lsp_server.completion.prompt import PromptFormat, detect_format, get_format
from lsp_server.errors import CodetailorError
from lsp_server.model.engine import Engine, PrefixCache
from lsp_server.model.loading import LoadedModel


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
) -> Completer:
    """A Completer over `loaded`, with KV prefix reuse unless `reuse` is False."""
    from lsp_server.model.backend import TransformersBackend, eos_ids

    fmt = choose_format(loaded, prompt_format)
    backend = TransformersBackend(loaded.model, eos_ids(loaded.tokenizer, loaded.model))
    engine = Engine(backend, cache=PrefixCache(), reuse=reuse)
    if window_tokens is None:
        # CPU prefill is the bottleneck; a GPU affords a wider view of the file.
        window_tokens = 1024 if loaded.device == "cpu" else 4096
    return Completer(engine, loaded.tokenizer, fmt, window_tokens=window_tokens)
