"""The model behind the server: loading in the background, and one thread that generates.

`ModelHost` owns the loaded model and its `Completer`s, one per adapter the
workspace folders use (see resident.py). Loading (and reloading when the
settings change) runs on a loader thread and reports its stages through a
callback; completions run one at a time on a worker thread, so the server's
event loop never waits for the model, and another set of adapters is swapped
onto the resident base model there, between two requests. Both threads are
daemons: a client that goes away never keeps the process alive. No pygls here.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from lsp_server.errors import CodetailorError
from lsp_server.session.settings import Settings

if TYPE_CHECKING:
    from lsp_server.completion.completer import Completer
    from lsp_server.model.next_edit import NextEditPredictor
    from lsp_server.model.resident import ResidentAdapters
    from lsp_server.model.wiring import AdapterEngine

log = logging.getLogger("codetailor.service")

T = TypeVar("T")
State = Literal["idle", "loading", "ready", "failed"]
# kind ("begin", "report", "end", "failed", "problem"), message, percentage
EventCallback = Callable[[str, str, "int | None"], None]


class Worker:
    """A daemon thread that runs submitted calls one after another.

    Background calls (warming a cache, computing a suggestion before it is
    asked for) run only when no ordinary call waits; an ordinary call that
    arrives while one runs sets that call's cancel flag, so it yields at its
    next check (one prefill chunk, one decoding step).
    """

    def __init__(self, name: str) -> None:
        self._jobs: deque[_Job] = deque()
        self._background: deque[_Job] = deque()
        self._stopped = False
        self._yield: threading.Event | None = None  # the running background call's cancel flag
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        with self._cond:
            self._jobs.append(_Job(future, fn))
            if self._yield is not None:
                self._yield.set()
            self._cond.notify()
        return future

    def submit_background(self, fn: Callable[[], T], cancel: threading.Event) -> Future[T]:
        """Run `fn` when nothing else waits; `cancel` is set when an ordinary call arrives."""
        future: Future[T] = Future()
        with self._cond:
            self._background.append(_Job(future, fn, cancel))
            self._cond.notify()
        return future

    def stop(self) -> None:
        """End the thread once the calls already submitted have run (background ones are
        dropped: their futures are cancelled)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _next(self) -> _Job | None:
        with self._cond:
            self._cond.wait_for(lambda: self._stopped or self._jobs or self._background)
            if self._jobs:
                job = self._jobs.popleft()
            elif self._stopped:
                for dropped in self._background:
                    dropped.future.cancel()
                self._background.clear()
                return None
            else:
                job = self._background.popleft()
            self._yield = job.cancel
            return job

    def _run(self) -> None:
        while (job := self._next()) is not None:
            if job.future.set_running_or_notify_cancel():
                try:
                    job.future.set_result(job.fn())
                except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits it
                    job.future.set_exception(exc)
            with self._cond:
                self._yield = None


@dataclass(frozen=True)
class _Job:
    future: Future[Any]
    fn: Callable[[], Any]
    cancel: threading.Event | None = None  # set for background calls: "yield now"


# Why a workspace folder's adapter does not answer it (`ModelHost.answers_for`).
INT8_NOTE = (
    "int8 weights cannot carry unmerged LoRA adapters: one adapter at a time, merged; "
    "the first folder's adapter answers every folder"
)


@dataclass(frozen=True)
class Loaded:
    """Ready completers and the facts `codetailor.status` reports about them.

    `completer` answers the default adapter (the first workspace folder's);
    `completers` holds one per adapter asked for (keys as the session names them:
    a folder, a registered name, None for the base model), each with its own KV
    prefix cache. `resident` is set when those adapters share one local base
    model, so another set of adapters loads onto it in place (see `ModelHost.swap`).
    """

    completer: Completer
    model: Any  # LoadedModel
    prompt_format: str
    completers: dict[str | None, Completer] = field(default_factory=dict)
    resident: ResidentAdapters | None = None
    failed: dict[str | None, str] = field(default_factory=dict)  # adapter -> why it did not load
    mode: str = "merged"  # "base", "merged", "unmerged", "int8" or "remote"


def load_completer(
    settings: Settings,
    trust_remote_code: bool,
    report: EventCallback,
    adapters: Sequence[str | None] = (),
    *,
    compile: str = "auto",
) -> Loaded:
    """Load the model the settings name with `settings.adapter` (the default) and the
    other `adapters` the workspace folders use, and build their Completers;
    `compile` is `serve --compile` (auto, on, off)."""
    from lsp_server.model import registry
    from lsp_server.model.loading import load_model, merges_adapters
    from lsp_server.model.resident import ResidentAdapters
    from lsp_server.session.settings import parse_engine

    wanted = list(dict.fromkeys([settings.adapter, *adapters]))
    url = parse_engine(settings.engine)
    if url is not None:  # only the tokenizer loads here: the server at `url` generates
        return load_remote(url, settings, trust_remote_code, report, wanted)
    int8 = settings.dtype == "int8"
    loaded = load_model(
        settings.model,
        adapter=registry.adapter_folder(settings.adapter) if int8 else None,
        device=settings.device,
        dtype=settings.dtype,
        trust_remote_code=trust_remote_code,
    )
    report("report", f"loaded {loaded.name} on {loaded.device} in {loaded.load_seconds:.1f} s", 80)
    if int8:
        if len(wanted) > 1:
            log.warning("%s", INT8_NOTE)
        completer = _default_completer(loaded, settings, report)
        return Loaded(
            completer, loaded, completer.format.name, {settings.adapter: completer}, mode="int8"
        )
    merges = merges_adapters(loaded.dtype)
    resident = ResidentAdapters(loaded.model, loaded.source, loaded.fingerprint, merges=merges)
    return resync(loaded, resident, {}, settings, wanted, report, compile=compile)


def resync(
    base: Any,
    resident: ResidentAdapters,
    old: dict[str | None, Completer],
    settings: Settings,
    wanted: Sequence[str | None],
    report: EventCallback,
    *,
    compile: str = "off",
) -> Loaded:
    """The resident base model (`base`, a LoadedModel) holding the adapters in `wanted`
    (the default first): new ones loaded onto it, those no longer wanted dropped, merged
    when only one is in use. The `old` completers of adapters kept are kept (their KV
    caches hold entries of the same weights); a dropped adapter's engine hands what
    still runs on it to the default adapter's (see wiring.AdapterEngine). `compile`
    is `serve --compile`, for the backend built at the first load (`local_backend`)."""
    from lsp_server.model import registry
    from lsp_server.model.wiring import build_adapter_completer, local_backend

    folders = {key: registry.adapter_folder(key) for key in wanted}
    errors = resident.add(folders.values())  # the old ones go once the new engines exist
    default = wanted[0]
    failed: dict[str | None, str] = {
        key: errors[f] for key, f in folders.items() if key and f and f in errors
    }
    if default in failed:  # the adapter the settings name: a clear failure
        raise CodetailorError(failed[default])
    engines = {key: cast("AdapterEngine", c.engine) for key, c in old.items()}
    backend = (
        next(iter(engines.values())).engine.backend if engines else local_backend(base, compile)
    )
    completers: dict[str | None, Completer] = {}
    for key, folder in folders.items():
        if key in failed:
            continue
        if key in engines and engines[key].adapter == folder:
            completers[key] = old[key]
        else:
            completers[key] = _adapter_completer(
                build_adapter_completer, base, resident, folder, backend, settings, report
            )
    for key, engine in engines.items():
        if completers.get(key) is not old[key]:
            engine.replaced_by = cast("AdapterEngine", completers[default].engine)
    resident.keep_only(folders.values())
    model = dataclasses.replace(base, adapter=resident.info(folders[default]))
    completer = completers[default]
    return Loaded(
        completer, model, completer.format.name, completers, resident, failed, resident.mode()
    )


def _adapter_completer(
    build: Callable[..., Completer],
    model: Any,
    resident: Any,
    folder: str | None,
    backend: Any,
    settings: Settings,
    report: EventCallback,
) -> Completer:
    try:
        return build(model, resident, folder, backend=backend, prompt_format=settings.prompt_format)
    except CodetailorError as exc:
        if not settings.prompt_format:
            raise
        report("problem", f"setting 'promptFormat': {exc}; using the model's own format", None)
        return build(model, resident, folder, backend=backend)


def _default_completer(loaded: Any, settings: Settings, report: EventCallback) -> Completer:
    from lsp_server.model.wiring import build_completer

    try:
        return build_completer(loaded, prompt_format=settings.prompt_format)
    except CodetailorError as exc:
        if not settings.prompt_format:
            raise
        report("problem", f"setting 'promptFormat': {exc}; using the model's own format", None)
        return build_completer(loaded)


def load_remote(
    url: str,
    settings: Settings,
    trust_remote_code: bool,
    report: EventCallback,
    wanted: Sequence[str | None],
) -> Loaded:
    """One remote completer per adapter: each sends its adapter's registered name as
    `model` (the base model's name for None); the tokenizer loads once."""
    from lsp_server.model.wiring import build_remote_completer, load_tokenizer

    tokenizer = load_tokenizer(settings.model, trust_remote_code=trust_remote_code)
    completers: dict[str | None, Completer] = {}
    remotes = {}
    for key in wanted:
        completers[key], remotes[key] = build_remote_completer(
            url,
            model=settings.model,
            adapter=key,
            prompt_format=settings.prompt_format,
            tokenizer=tokenizer,
        )
    default = wanted[0]
    remote = remotes[default]
    report("report", f"tokenizer of {remote.base} ready; generating on {url}", 80)
    completer = completers[default]
    return Loaded(completer, remote, completer.format.name, completers, mode="remote")


Loader = Callable[..., Loaded]  # (settings, trust_remote_code, report, adapters) -> Loaded


class ModelHost:
    """The current model, (re)loaded in the background; `completer` is None until ready."""

    def __init__(
        self,
        on_event: EventCallback,
        *,
        trust_remote_code: bool = False,
        loader: Loader = load_completer,
    ) -> None:
        self.on_event = on_event
        self.trust_remote_code = trust_remote_code
        self.loader = loader
        self.state: State = "idle"
        self.error: str | None = None
        self.loaded: Loaded | None = None
        self.settings: Settings | None = None
        self._ticket = 0
        self.swapping = False  # an adapter loads behind the answering model
        self.loaded_at: float | None = None  # time.time() of the last load or swap
        self.swaps = 0  # adapters switched in behind a running model
        self.last_swap_seconds: float | None = None  # load + warm-up + switch
        self._loads = Worker("codetailor-loader")
        self.generator = Worker("codetailor-generate")

    @property
    def completer(self) -> Completer | None:
        loaded = self.loaded
        return loaded.completer if loaded is not None else None

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run `job` on the generation thread, after the jobs already waiting there."""
        return self.generator.submit(job)

    def submit_background(self, job: Callable[[], T], cancel: threading.Event) -> Future[T]:
        """Run `job` when no request waits; `cancel` is set when one arrives (see Worker)."""
        return self.generator.submit_background(job, cancel)

    def completer_for(self, adapter: str | None) -> Completer | None:
        """The completer that answers for `adapter` (as the session names it): its own
        when the host holds it, else the default one (see `answers_for`)."""
        loaded = self.loaded
        if loaded is None:
            return None
        return loaded.completers.get(adapter, loaded.completer)

    def next_edit_for(
        self, adapter: str | None, format_name: str | None = None
    ) -> NextEditPredictor | None:
        """The next-edit predictor beside the completer answering for `adapter`."""
        from lsp_server.model.next_edit import next_edit_predictor

        completer = self.completer_for(adapter)
        return next_edit_predictor(completer, format_name) if completer is not None else None

    def answers_for(self, adapter: str | None) -> tuple[str | None, str]:
        """Which adapter answers requests for `adapter`, and why (for the status)."""
        loaded = self.loaded
        if loaded is None:
            return adapter, f"model {self.state}"
        default = self.settings.adapter if self.settings else None
        if adapter in loaded.completers:
            if loaded.mode == "remote":
                return adapter, "its name sent as `model` to the remote engine"
            if adapter is None:
                return None, "the base model" + (" (adapters off)" if loaded.mode != "base" else "")
            how = {
                "merged": "loaded, merged into the base weights (the only one in use)",
                "unmerged": "loaded unmerged, selected per request",
                "int8": "loaded, merged (int8)",
            }
            return adapter, how.get(loaded.mode, loaded.mode)
        if adapter in loaded.failed:
            return default, f"cannot load it ({loaded.failed[adapter]}): the default answers"
        if loaded.mode == "int8":
            return default, INT8_NOTE
        return default, "loading: the default answers until it is ready"

    def load(self, settings: Settings, adapters: Sequence[str | None] = ()) -> None:
        """Drop the current model and load the one `settings` name, in the background,
        with `settings.adapter` (the default) and the other `adapters` in use."""
        self._ticket += 1
        ticket = self._ticket
        self.loaded, self.state, self.error, self.settings = None, "loading", None, settings
        self.swapping = False
        self._loads.submit(lambda: self._load(ticket, settings, tuple(adapters)))

    def swap(self, settings: Settings, adapters: Sequence[str | None] = ()) -> None:
        """Switch to another set of adapters on the same base model, without failing a request.

        Local weights in float (not int8): the adapters load onto the resident base
        model in place, as one job on the generation thread between two requests
        (`resync`); each new adapter gets a new engine and KV prefix cache, so no entry
        computed with other weights answers for it. Otherwise (int8, a remote engine)
        the next generation loads behind the current one, which keeps answering; requests
        already running finish on the old one. Nothing loaded yet: a plain `load`.
        """
        if self.loaded is None:
            self.load(settings, adapters)
            return
        self._ticket += 1
        ticket = self._ticket
        self.settings, self.swapping = settings, True
        wanted = tuple(adapters)
        if self.loaded.resident is not None:
            self.generator.submit(lambda: self._resync(ticket, settings, wanted))
        else:
            self._loads.submit(lambda: self._load(ticket, settings, wanted, swap=True))

    def _resync(self, ticket: int, settings: Settings, adapters: tuple[str | None, ...]) -> None:
        loaded = self.loaded
        if ticket != self._ticket or loaded is None or loaded.resident is None:
            return
        wanted = list(dict.fromkeys([settings.adapter, *adapters]))
        what = ", ".join(a or "none (base model)" for a in wanted)
        self.on_event("begin", f"loading adapters {what}", 0)
        started = time.monotonic()
        try:
            resynced = resync(
                loaded.model, loaded.resident, loaded.completers, settings, wanted, self.on_event
            )
        except Exception as exc:  # noqa: BLE001 - the current adapters keep answering
            self._failed(ticket, f"adapters {what}", exc, swap=True)
            return
        self._ready(resynced, time.monotonic() - started, f"adapters {what}", swap=True)

    def _load(
        self,
        ticket: int,
        settings: Settings,
        adapters: tuple[str | None, ...],
        *,
        swap: bool = False,
    ) -> None:
        if ticket != self._ticket:
            return  # a newer load was asked for while this one waited
        from lsp_server.model.loading import DEFAULT_MODEL

        name = settings.model or DEFAULT_MODEL
        what = f"adapter {settings.adapter or 'none (base model)'}" if swap else name
        self.on_event("begin", f"loading {what}", 0)
        started = time.monotonic()
        try:
            loaded = self.loader(settings, self.trust_remote_code, self.on_event, adapters)
            self.on_event("report", "warming up", 90)
            warm_up(loaded.completer)
        except Exception as exc:  # noqa: BLE001 - the server reports it and stays up
            self._failed(ticket, what, exc, swap=swap)
            return
        if ticket == self._ticket:
            self._ready(loaded, time.monotonic() - started, what, swap=swap)

    def _failed(self, ticket: int, what: str, exc: Exception, *, swap: bool) -> None:
        message = str(exc) if isinstance(exc, CodetailorError) else repr(exc)
        traceback = not isinstance(exc, CodetailorError)  # a user mistake needs no traceback
        log.error("cannot load %s: %s", what, message, exc_info=traceback)
        if ticket == self._ticket:
            self.error, self.swapping = message, False
            if not swap:  # a failed swap leaves the current model answering
                self.state = "failed"
        self.on_event("failed", f"cannot load {what}: {message}", None)

    def _ready(self, loaded: Loaded, seconds: float, what: str, *, swap: bool) -> None:
        self.loaded, self.state, self.error, self.swapping = loaded, "ready", None, False
        self.loaded_at = time.time()
        where = loaded.model.device
        if loaded.failed:
            problems = "; ".join(f"{k}: {v}" for k, v in loaded.failed.items())
            self.on_event("problem", f"cannot load adapters ({problems})", None)
        if swap:
            self.swaps += 1
            self.last_swap_seconds = seconds
            self.on_event("end", f"switched to {what} on {where} ({seconds:.2f} s)", 100)
        else:
            self.on_event("end", f"ready: {loaded.model.name} on {where} in {seconds:.1f} s", 100)

    def status(self) -> dict[str, Any]:
        loaded = self.loaded
        model = loaded.model if loaded else None
        engine = loaded.completer.engine if loaded else None
        cache = getattr(engine, "cache", None)  # a remote engine keeps none here
        return {
            "state": self.state,
            "error": self.error,
            "model": model.name if model else (self.settings.model if self.settings else None),
            "adapter": str(model.adapter.path) if model and model.adapter else None,
            "adapters": self.adapters_status(),
            "device": model.device if model else None,
            "dtype": model.dtype if model else None,
            "promptFormat": loaded.prompt_format if loaded else None,
            "loadSeconds": round(model.load_seconds, 2) if model else None,
            "loadedAt": self.loaded_at,
            "swaps": self.swaps,
            "lastSwapSeconds": (
                round(self.last_swap_seconds, 3) if self.last_swap_seconds is not None else None
            ),
            "swapping": self.swapping,
            "remote": getattr(engine, "status", lambda: None)(),
            "cache": _cache_status(cache),
        }

    def adapters_status(self) -> dict[str, Any] | None:
        """How the adapters are held (mode), and each one's KV prefix cache."""
        loaded = self.loaded
        if loaded is None:
            return None
        held = {
            str(key) if key is not None else "none": _cache_status(
                getattr(completer.engine, "cache", None)
            )
            for key, completer in loaded.completers.items()
        }
        return {
            "mode": loaded.mode,
            "note": INT8_NOTE if loaded.mode == "int8" else None,
            "caches": held,
            "failed": dict(loaded.failed),
        }


def _cache_status(cache: Any) -> dict[str, Any] | None:
    if cache is None:
        return None
    return cache.stats() | {"maxEntries": cache.max_entries, "maxTokens": cache.max_tokens}


def warm_up(completer: Completer) -> None:
    """One short generation, so the first real request does not pay for lazy initialisation."""
    completer.complete("def main():\n", 12, max_tokens=2, mode="line")
