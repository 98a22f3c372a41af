"""The model behind the server: loading in the background, and one thread that generates.

`ModelHost` owns the loaded model and its `Completer`. Loading (and reloading
when the settings change) runs on a loader thread and reports its stages
through a callback; completions run one at a time on a worker thread, so the
server's event loop never waits for the model. Both threads are daemons: a
client that goes away never keeps the process alive. No pygls here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from lsp_server.errors import CodetailorError
from lsp_server.session.settings import Settings

if TYPE_CHECKING:
    from lsp_server.completion.completer import Completer

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


@dataclass(frozen=True)
class Loaded:
    """A ready completer and the facts `codetailor.status` reports about it."""

    completer: Completer
    model: Any  # LoadedModel
    prompt_format: str


def load_completer(
    settings: Settings, trust_remote_code: bool, report: EventCallback, *, compile: str = "auto"
) -> Loaded:
    """Load the model the settings name and build its Completer (the real loader);
    `compile` is `serve --compile` (auto, on, off)."""
    from lsp_server.model import registry
    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import build_completer, build_remote_completer
    from lsp_server.session.settings import parse_engine

    url = parse_engine(settings.engine)
    if url is not None:  # only the tokenizer loads here: the server at `url` generates
        completer, remote = build_remote_completer(
            url,
            model=settings.model,
            adapter=settings.adapter,
            prompt_format=settings.prompt_format,
            trust_remote_code=trust_remote_code,
        )
        report("report", f"tokenizer of {remote.base} ready; generating on {url}", 80)
        return Loaded(completer, remote, completer.format.name)

    loaded = load_model(
        settings.model,
        adapter=registry.adapter_folder(settings.adapter),
        device=settings.device,
        dtype=settings.dtype,
        trust_remote_code=trust_remote_code,
    )
    report("report", f"loaded {loaded.name} on {loaded.device} in {loaded.load_seconds:.1f} s", 80)
    try:
        completer = build_completer(loaded, prompt_format=settings.prompt_format, compile=compile)
    except CodetailorError as exc:
        if not settings.prompt_format:
            raise
        report("problem", f"setting 'promptFormat': {exc}; using the model's own format", None)
        completer = build_completer(loaded, compile=compile)
    return Loaded(completer, loaded, completer.format.name)


Loader = Callable[[Settings, bool, EventCallback], Loaded]


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

    def load(self, settings: Settings) -> None:
        """Drop the current model and load the one `settings` name, in the background."""
        self._ticket += 1
        ticket = self._ticket
        self.loaded, self.state, self.error, self.settings = None, "loading", None, settings
        self.swapping = False
        self._loads.submit(lambda: self._load(ticket, settings))

    def swap(self, settings: Settings) -> None:
        """Load `settings` (another adapter) behind the current model, then switch to it.

        The current generation keeps answering while the next one loads; requests
        already running finish on the old one (they hold its completer). The new
        generation has its own engine and KV prefix cache, so no entry computed with
        the old weights answers for the new ones; the old cache goes with the old
        completer. Nothing loaded yet: a plain `load`.
        """
        if self.loaded is None:
            self.load(settings)
            return
        self._ticket += 1
        ticket = self._ticket
        self.settings, self.swapping = settings, True
        self._loads.submit(lambda: self._load(ticket, settings, swap=True))

    def _load(self, ticket: int, settings: Settings, *, swap: bool = False) -> None:
        if ticket != self._ticket:
            return  # a newer load was asked for while this one waited
        from lsp_server.model.loading import DEFAULT_MODEL

        name = settings.model or DEFAULT_MODEL
        what = f"adapter {settings.adapter or 'none (base model)'}" if swap else name
        self.on_event("begin", f"loading {what}", 0)
        started = time.monotonic()
        try:
            loaded = self.loader(settings, self.trust_remote_code, self.on_event)
            self.on_event("report", "warming up", 90)
            warm_up(loaded.completer)
        except Exception as exc:  # noqa: BLE001 - the server reports it and stays up
            message = str(exc) if isinstance(exc, CodetailorError) else repr(exc)
            traceback = not isinstance(exc, CodetailorError)  # a user mistake needs no traceback
            log.error("cannot load %s: %s", what, message, exc_info=traceback)
            if ticket == self._ticket:
                self.error, self.swapping = message, False
                if not swap:  # a failed swap leaves the current model answering
                    self.state = "failed"
            self.on_event("failed", f"cannot load {what}: {message}", None)
            return
        if ticket != self._ticket:
            return
        seconds = time.monotonic() - started
        self.loaded, self.state, self.error, self.swapping = loaded, "ready", None, False
        self.loaded_at = time.time()
        where = loaded.model.device
        if swap:
            self.swaps += 1
            self.last_swap_seconds = seconds
            self.on_event("end", f"switched to {what} on {where} ({seconds:.1f} s)", 100)
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
            "cache": (
                cache.stats() | {"maxEntries": cache.max_entries, "maxTokens": cache.max_tokens}
                if cache is not None
                else None
            ),
        }


def warm_up(completer: Completer) -> None:
    """One short generation, so the first real request does not pay for lazy initialisation."""
    completer.complete("def main():\n", 12, max_tokens=2, mode="line")
