"""The model layer's front door: a `ModelSpec` and adapters in, ready completers out.

Every caller that needs completions from a model comes here: the server's host
(serve), `codetailor complete`, the benchmarks and `finetune`'s evaluation.

- `load_completers(spec, adapters)` loads the model once and gives each adapter
  its own `Completer` (and KV prefix cache). Locally the adapters stay resident
  on the one base model (resident.py): merged when one is in use, unmerged and
  selected per request when several; int8 weights take one adapter, merged at
  load. With `spec.engine` (a URL) only the tokenizer loads: an OpenAI-compatible
  server generates, asked for each adapter by its registered name.
- `resync(loaded, spec, adapters)` puts another set of adapters onto the resident
  base model in place (the server's swap).
- `completer_over(loaded)` / `weights_completer(model, ...)`: a completer over
  weights already in memory (a model being trained, a plain-merged reference).

The prompt window's rule (`window_tokens`) lives here, once.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lsp_server.completion.completer import Completer
from lsp_server.completion.prompt import PromptFormat, get_format
from lsp_server.errors import CodetailorError
from lsp_server.model import shipped
from lsp_server.model.engine import Engine, PrefixCache
from lsp_server.model.loading import LoadedModel, load_model, merges_adapters
from lsp_server.model.remote import RemoteEngine
from lsp_server.model.resident import ResidentAdapters
from lsp_server.model.wiring import (
    AdapterEngine,
    RemoteModel,
    build_remote_completer,
    choose_format,
    load_tokenizer,
    local_backend,
)
from lsp_server.spec import AdapterRef, ModelSpec, folder

log = logging.getLogger("codetailor.service")

# kind ("begin", "report", "end", "failed", "problem"), message, percentage
Report = Callable[[str, str, "int | None"], None]

# Why a workspace folder's adapter does not answer it (`ModelHost.answers_for`).
INT8_NOTE = (
    "int8 weights cannot carry unmerged LoRA adapters: one adapter at a time, merged; "
    "the first folder's adapter answers every folder"
)


def window_tokens(device: str) -> int:
    """The prompt window for a model on `device` ("cpu", "cuda:0", "mps", or "remote": a
    server's GPU): CPU prefill is the bottleneck; a GPU affords a wider view of the file."""
    return 1024 if device == "cpu" else 4096


def quiet(kind: str, message: str, percentage: int | None) -> None:
    """A `Report` that says nothing."""


@dataclass(frozen=True)
class Loaded:
    """Ready completers and the facts `codetailor.status` reports about them.

    `completer` answers the default adapter (the first of those asked for);
    `completers` holds one per adapter asked for (None: the base model), each with
    its own KV prefix cache. `resident` is set when those adapters share one local
    base model, so another set of adapters loads onto it in place (`resync`).
    """

    completer: Completer
    model: LoadedModel | RemoteModel
    prompt_format: str
    completers: dict[AdapterRef | None, Completer] = field(default_factory=dict)
    resident: ResidentAdapters | None = None
    failed: dict[AdapterRef | None, str] = field(default_factory=dict)  # adapter -> why not
    mode: str = "merged"  # "base", "merged", "unmerged", "int8" or "remote"

    @staticmethod
    def cache_of(completer: Completer) -> PrefixCache | None:
        """The KV prefix cache of `completer`'s engine (None: a remote engine keeps none)."""
        engine = completer.engine
        return engine.cache if isinstance(engine, (AdapterEngine, Engine)) else None

    @property
    def answering(self) -> AdapterRef | None:
        """The adapter whose completer answers by default (None: the base model), which is
        the one asked for first unless it was refused (see `failed`)."""
        return next((a for a, c in self.completers.items() if c is self.completer), None)

    def engine(self, adapter: AdapterRef | None = None) -> Engine:
        """The local engine over token ids answering for `adapter` (for benchmarks that
        drive it directly); a CodetailorError for a remote engine."""
        engine = self.completers[adapter].engine
        if isinstance(engine, AdapterEngine):
            return engine.engine
        if isinstance(engine, Engine):
            return engine
        raise CodetailorError("a remote engine has no local engine over token ids")

    def remote_status(self) -> dict[str, Any] | None:
        """The remote engine's own status (connection, errors); None for a local one."""
        engine = self.completer.engine
        return engine.status() if isinstance(engine, RemoteEngine) else None


def load_completers(
    spec: ModelSpec,
    adapters: Sequence[AdapterRef | None] = (None,),
    *,
    report: Report = quiet,
    reuse: bool = True,
    window: int | None = None,
) -> Loaded:
    """Load `spec`'s model with `adapters` (the first is the default; None: the base model)
    and build one Completer each. `reuse`: KV prefix reuse across requests; `window`:
    the prompt window in tokens (default: `window_tokens` of the device)."""
    wanted = list(dict.fromkeys(adapters or (None,)))
    if spec.engine is not None:  # only the tokenizer loads here: the server at the URL generates
        return load_remote(spec, wanted, report, window=window)
    int8 = spec.dtype == "int8"
    loaded = _load_int8(spec, wanted[0]) if int8 else _load(spec, None)
    report("report", f"loaded {loaded.name} on {loaded.device} in {loaded.load_seconds:.1f} s", 80)
    if int8:  # quantized layers take no LoRA: the default adapter merged before quantizing
        if len(wanted) > 1:
            log.warning("%s", INT8_NOTE)
        fmt = _format(spec, loaded, report)
        completer = completer_over(loaded, prompt_format=fmt, window=window, reuse=reuse)
        kept, refused = _shipped_fit(wanted[:1], loaded)
        return Loaded(completer, loaded, fmt.name, {kept[0]: completer}, None, refused, "int8")
    resident = ResidentAdapters(
        loaded.model, loaded.source, loaded.fingerprint, merges=merges_adapters(loaded.dtype)
    )
    window = window or window_tokens(loaded.device)
    backend = local_backend(loaded, spec.compile, window_tokens=window)
    held = _Held(loaded, resident, {}, backend, reuse, window)
    return held.hold(spec, wanted, report)


def _load(spec: ModelSpec, adapter: AdapterRef | None) -> LoadedModel:
    return load_model(
        spec.model,
        adapter=folder(adapter),
        device=spec.device,
        dtype=spec.dtype,
        trust_remote_code=spec.trust_remote_code,
    )


def _load_int8(spec: ModelSpec, adapter: AdapterRef | None) -> LoadedModel:
    """int8 weights with `adapter` merged in before quantizing; without it where it is the
    shipped general adapter made for other weights (its base fingerprint is known only once
    the weights are: loaded again, and `shipped.refusal` says why, once)."""
    try:
        return _load(spec, adapter)
    except CodetailorError as exc:
        if not shipped.is_shipped(folder(adapter)):
            raise
        error = exc
    loaded = _load(spec, None)
    if not shipped.refusal(folder(adapter), loaded.name, loaded.fingerprint):
        raise error  # it fits these weights: what failed was something else
    return loaded


def resync(
    loaded: Loaded,
    spec: ModelSpec,
    adapters: Sequence[AdapterRef | None],
    report: Report = quiet,
) -> Loaded:
    """`loaded`'s resident base model holding `adapters` instead (the default first): new
    ones loaded onto it, those no longer wanted dropped, merged when only one is in use.
    The completers of adapters kept are kept (their KV caches hold entries of the same
    weights); a dropped adapter's engine hands what still runs on it to the default
    adapter's (see wiring.AdapterEngine). A CodetailorError when the default cannot load:
    the current adapters then still answer."""
    engine = loaded.completer.engine
    if loaded.resident is None or not isinstance(engine, AdapterEngine):
        raise CodetailorError("these adapters are not resident on a local base model")
    assert isinstance(loaded.model, LoadedModel)
    base = dataclasses.replace(loaded.model, adapter=None)
    window = loaded.completer.window_tokens
    backend, reuse = engine.engine.backend, engine.engine.reuse
    held = _Held(base, loaded.resident, loaded.completers, backend, reuse, window)
    return held.hold(spec, list(dict.fromkeys(adapters or (None,))), report)


@dataclass(frozen=True)
class _Held:
    """A local base model with its resident adapters and their completers, and how each
    new adapter's engine and completer are built."""

    base: LoadedModel
    resident: ResidentAdapters
    completers: dict[AdapterRef | None, Completer]
    backend: Any  # shared by every adapter's engine
    reuse: bool
    window: int

    def hold(self, spec: ModelSpec, wanted: list[AdapterRef | None], report: Report) -> Loaded:
        """The adapters in `wanted` (the default first) on the base model, one completer each."""
        resident, old = self.resident, self.completers
        wanted, refused = _shipped_fit(wanted, self.base)
        errors = resident.add([folder(a) for a in wanted])  # the old go once the new are ready
        failed: dict[AdapterRef | None, str] = refused | {
            a: errors[a.path] for a in wanted if a is not None and a.path in errors
        }
        default = wanted[0]
        if default in failed:  # the adapter asked for first: a clear failure
            raise CodetailorError(failed[default])
        completers = {
            a: old[a] if a in old else self.completer(spec, a, report)
            for a in wanted
            if a not in failed
        }
        heir = completers[default].engine
        for adapter, completer in old.items():
            dropped = completer.engine
            if completers.get(adapter) is not completer and isinstance(dropped, AdapterEngine):
                assert isinstance(heir, AdapterEngine)
                dropped.replaced_by = heir
        resident.keep_only([folder(a) for a in wanted])
        model = dataclasses.replace(self.base, adapter=resident.info(folder(default)))
        completer = completers[default]
        mode = resident.mode()
        return Loaded(completer, model, completer.format.name, completers, resident, failed, mode)

    def completer(self, spec: ModelSpec, adapter: AdapterRef | None, report: Report) -> Completer:
        """A new completer for `adapter`, resident: its own engine and KV prefix cache, in
        its recorded prompt format unless the spec overrides it."""
        info = self.resident.info(folder(adapter))
        fmt = _format(spec, dataclasses.replace(self.base, adapter=info), report)
        engine = Engine(self.backend, cache=PrefixCache(), reuse=self.reuse)
        selecting = AdapterEngine(engine, self.resident, folder(adapter))
        return Completer(selecting, self.base.tokenizer, fmt, window_tokens=self.window)


def _shipped_fit(
    wanted: list[AdapterRef | None], base: LoadedModel
) -> tuple[list[AdapterRef | None], dict[AdapterRef | None, str]]:
    """`wanted` with the shipped general adapter left out where it was made for other
    weights than `base`'s (the base model answers in its place, said once at WARNING:
    shipped.refusal), and {that adapter: why}."""
    refused: dict[AdapterRef | None, str] = {}
    for adapter in wanted:
        why = shipped.refusal(folder(adapter), base.name, base.fingerprint)
        if adapter is not None and why:
            refused[adapter] = why
    kept = [None if a in refused else a for a in wanted]
    return list(dict.fromkeys(kept)), refused


def _format(spec: ModelSpec, loaded: LoadedModel, report: Report) -> PromptFormat:
    """`spec.prompt_format`, else the adapter's recorded format, else the tokenizer's own;
    an unknown `prompt_format` is reported and the model's own format used."""
    try:
        return choose_format(loaded, spec.prompt_format)
    except CodetailorError as exc:
        if not spec.prompt_format:
            raise
        report("problem", f"setting 'promptFormat': {exc}; using the model's own format", None)
        return choose_format(loaded)


def load_remote(
    spec: ModelSpec,
    adapters: Sequence[AdapterRef | None],
    report: Report = quiet,
    *,
    window: int | None = None,
) -> Loaded:
    """One remote completer per adapter: each sends its adapter's registered name as
    `model` (the base model's name for None); the tokenizer loads once."""
    assert spec.engine is not None
    tokenizer = load_tokenizer(spec.model, trust_remote_code=spec.trust_remote_code)
    completers: dict[AdapterRef | None, Completer] = {}
    remotes = {}
    for adapter in adapters:
        completers[adapter], remotes[adapter] = build_remote_completer(
            spec.engine,
            model=spec.model,
            adapter=adapter,
            prompt_format=spec.prompt_format,
            tokenizer=tokenizer,
            window_tokens=window or window_tokens("remote"),
        )
    default = adapters[0]
    remote = remotes[default]
    report("report", f"tokenizer of {remote.base} ready; generating on {spec.engine}", 80)
    completer = completers[default]
    return Loaded(completer, remote, completer.format.name, completers, mode="remote")


def completer_over(
    loaded: LoadedModel,
    *,
    prompt_format: PromptFormat | str | None = None,
    window: int | None = None,
    reuse: bool = True,
    compile: str = "off",
) -> Completer:
    """A Completer over weights already loaded (with their adapter, if any, applied):
    a baseline, or a reference to compare the resident path with. `compile` (auto, on,
    off) runs the decode steps compiled (`model.compiled`)."""
    if isinstance(prompt_format, PromptFormat):
        fmt = prompt_format
    else:
        fmt = choose_format(loaded, prompt_format)
    window = window or window_tokens(loaded.device)
    backend = local_backend(loaded, compile, window_tokens=window)
    engine = Engine(backend, cache=PrefixCache(), reuse=reuse)
    return Completer(engine, loaded.tokenizer, fmt, window_tokens=window)


def weights_completer(
    model: Any, tokenizer: Any, fmt: PromptFormat | str, window: int
) -> Completer:
    """A Completer over `model` as it is in memory (a model being fine-tuned: a PEFT
    wrapper is looked through to the base model, which carries the LoRA layers)."""
    from lsp_server.model.backend import TransformersBackend, eos_ids

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backend = TransformersBackend(base, eos_ids(tokenizer, base))
    prompt = fmt if isinstance(fmt, PromptFormat) else get_format(fmt)
    return Completer(Engine(backend, cache=PrefixCache()), tokenizer, prompt, window_tokens=window)
