"""The model behind the server: loading in the background, and one thread that generates.

`ModelHost` holds what the factory (factory.py) built for a `ModelSpec` and its
adapters: one `Completer` per adapter the workspace folders use. It keeps the
threads and the state only. Loading (and reloading when the spec changes) runs
on a loader thread and reports its stages through a callback; completions run
one at a time on a worker thread, so the server's event loop never waits for
the model, and another set of adapters is swapped onto the resident base model
there, between two requests. Both threads are daemons: a client that goes away
never keeps the process alive. No pygls here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

from lsp_server.completion.completer import Completer
from lsp_server.errors import CodetailorError
from lsp_server.model.engine import PrefixCache
from lsp_server.model.factory import INT8_NOTE, Loaded, Report, load_completers, resync
from lsp_server.spec import AdapterRef, Adapters, Holding, ModelSpec, folder

if TYPE_CHECKING:
    from lsp_server.model.next_edit import NextEditPredictor

log = logging.getLogger("codetailor.service")

T = TypeVar("T")
State = Literal["idle", "loading", "ready", "failed"]
# Most ordinary calls that wait at once: past it, the oldest superseded one (its stop flag
# set) is dropped first, else the oldest one (its flag set for it). A request behind 200
# others waited 7 s before (issue 28).
MAX_WAITING = 32


class Worker:
    """A daemon thread that runs submitted calls one after another.

    Background calls (warming a cache, computing a suggestion before it is
    asked for) run only when no ordinary call waits; an ordinary call that
    arrives while one runs sets that call's cancel flag, so it yields at its
    next check (one prefill chunk, one decoding step).

    At most `MAX_WAITING` ordinary calls wait: one submitted with a `stop` flag may be
    dropped for a newer one (superseded ones first, then the oldest), which sets its
    flag and runs it ahead of the rest, where it returns at its first check.
    """

    def __init__(self, name: str) -> None:
        self._jobs: deque[_Job] = deque()
        self._dropped: deque[_Job] = deque()  # stopped to bound the queue: run first, cheap
        self._background: deque[_Job] = deque()
        self._stopped = False
        self._yield: threading.Event | None = None  # the running background call's cancel flag
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T], stop: threading.Event | None = None) -> Future[T]:
        """Run `fn` after the calls waiting; `stop`: its flag, set when it is superseded
        (or dropped here), which `fn` checks before doing any work."""
        future: Future[T] = Future()
        with self._cond:
            self._jobs.append(_Job(future, fn, stop=stop))
            self._bound()
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

    def _bound(self) -> None:
        """Drop waiting calls past MAX_WAITING: superseded ones first, then the oldest."""
        while len(self._jobs) > MAX_WAITING:
            stoppable = [j for j in self._jobs if j.stop is not None]
            if not stoppable:
                return  # none can be stopped: they all run
            victim = next((j for j in stoppable if j.stop and j.stop.is_set()), stoppable[0])
            self._jobs.remove(victim)
            assert victim.stop is not None
            victim.stop.set()
            self._dropped.append(victim)

    def stop(self) -> None:
        """End the thread once the calls already submitted have run (background ones are
        dropped: their futures are cancelled)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _next(self) -> _Job | None:
        with self._cond:
            self._cond.wait_for(
                lambda: self._stopped or self._jobs or self._dropped or self._background
            )
            if self._dropped:
                job = self._dropped.popleft()
            elif self._jobs:
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
    stop: threading.Event | None = None  # an ordinary call's own stop flag (superseded)


class Loader(Protocol):
    """What loads a spec with its adapters: the factory's `load_completers`, or a fake."""

    def __call__(
        self, spec: ModelSpec, adapters: Sequence[AdapterRef | None], *, report: Report
    ) -> Loaded: ...


class ModelHost:
    """The current model, (re)loaded in the background; `completer` is None until ready."""

    def __init__(self, on_event: Report, *, loader: Loader = load_completers) -> None:
        """`on_event(kind, message, percentage)` hears the loading stages: "begin",
        "report", "end", "failed", "problem"."""
        self.on_event = on_event
        self.loader = loader
        self.state: State = "idle"
        self.error: str | None = None
        self.loaded: Loaded | None = None
        self.held: Holding | None = None  # what it was last asked to hold
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

    def submit(self, job: Callable[[], T], stop: threading.Event | None = None) -> Future[T]:
        """Run `job` on the generation thread, after the jobs already waiting there; `stop`:
        its flag, which the queue's bound may set (see Worker)."""
        return self.generator.submit(job, stop)

    def submit_background(self, job: Callable[[], T], cancel: threading.Event) -> Future[T]:
        """Run `job` when no request waits; `cancel` is set when one arrives (see Worker)."""
        return self.generator.submit_background(job, cancel)

    def completer_for(self, adapter: AdapterRef | None) -> Completer | None:
        """The completer that answers for `adapter`: its own when the host holds it, else
        the default one (see `answers_for`)."""
        loaded = self.loaded
        if loaded is None:
            return None
        return loaded.completers.get(adapter, loaded.completer)

    def next_edit_for(
        self, adapter: AdapterRef | None, format_name: str | None = None
    ) -> NextEditPredictor | None:
        """The next-edit predictor beside the completer answering for `adapter`."""
        from lsp_server.model.next_edit import next_edit_predictor

        completer = self.completer_for(adapter)
        return next_edit_predictor(completer, format_name) if completer is not None else None

    def answers_for(self, adapter: AdapterRef | None) -> tuple[AdapterRef | None, str]:
        """Which adapter answers requests for `adapter`, and why (for the status)."""
        loaded = self.loaded
        if loaded is None:
            return adapter, f"model {self.state}"
        default = self.held.default if self.held else None
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
            answering = loaded.answering
            who = "the default answers" if answering is not None else "the base model answers"
            return answering, f"cannot load it ({loaded.failed[adapter]}): {who}"
        if loaded.mode == "int8":
            return default, INT8_NOTE
        return default, "loading: the default answers until it is ready"

    def load(self, spec: ModelSpec, adapters: Sequence[AdapterRef | None] = (None,)) -> None:
        """Drop the current model and load `spec`'s in the background, with `adapters`
        (the default first; None: the base model)."""
        self._ticket += 1
        ticket = self._ticket
        held = self.held = Holding(spec, tuple(adapters) or (None,))
        self.loaded, self.state, self.error, self.swapping = None, "loading", None, False
        self._loads.submit(lambda: self._load(ticket, held))

    def swap(self, spec: ModelSpec, adapters: Sequence[AdapterRef | None] = (None,)) -> None:
        """Switch to another set of adapters on the same base model, without failing a request.

        Local weights in float (not int8): the adapters load onto the resident base
        model in place, as one job on the generation thread between two requests
        (factory.resync); each new adapter gets a new engine and KV prefix cache, so no
        entry computed with other weights answers for it. Otherwise (int8, a remote
        engine) the next generation loads behind the current one, which keeps answering;
        requests already running finish on the old one. Nothing loaded yet: a plain `load`.
        """
        if self.loaded is None:
            self.load(spec, adapters)
            return
        self._ticket += 1
        ticket = self._ticket
        held = self.held = Holding(spec, tuple(adapters) or (None,))
        self.swapping = True
        if self.loaded.resident is not None:
            self.generator.submit(lambda: self._resync(ticket, held))
        else:
            self._loads.submit(lambda: self._load(ticket, held, swap=True))

    def _resync(self, ticket: int, held: Holding) -> None:
        loaded = self.loaded
        if ticket != self._ticket or loaded is None or loaded.resident is None:
            return
        what = _adapters_named(held.adapters)
        self.on_event("begin", f"loading adapters {what}", 0)
        started = time.monotonic()
        try:
            resynced = resync(loaded, held.spec, held.adapters, self.on_event)
        except Exception as exc:  # noqa: BLE001 - the current adapters keep answering
            self._failed(ticket, f"adapters {what}", exc, swap=True)
            return
        self._ready(resynced, time.monotonic() - started, f"adapters {what}", swap=True)

    def _load(self, ticket: int, held: Holding, *, swap: bool = False) -> None:
        if ticket != self._ticket:
            return  # a newer load was asked for while this one waited
        from lsp_server.model.loading import DEFAULT_MODEL

        name = held.spec.model or DEFAULT_MODEL
        what = f"adapter {folder(held.default) or 'none (base model)'}" if swap else name
        self.on_event("begin", f"loading {what}", 0)
        started = time.monotonic()
        try:
            loaded = self.loader(held.spec, held.adapters, report=self.on_event)
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
        asked = self.held.spec.model if self.held else None
        return {
            "state": self.state,
            "error": self.error,
            "model": model.name if model else asked,
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
            "remote": loaded.remote_status() if loaded else None,
            "cache": _cache_status(loaded.cache_of(loaded.completer)) if loaded else None,
        }

    def adapters_status(self) -> dict[str, Any] | None:
        """How the adapters are held (mode), and each one's KV prefix cache."""
        loaded = self.loaded
        if loaded is None:
            return None
        held = {
            folder(key) or "none": _cache_status(loaded.cache_of(completer))
            for key, completer in loaded.completers.items()
        }
        return {
            "mode": loaded.mode,
            "note": INT8_NOTE if loaded.mode == "int8" else None,
            "caches": held,
            "failed": {str(key): why for key, why in loaded.failed.items()},
        }


def _adapters_named(adapters: Adapters) -> str:
    return ", ".join(folder(a) or "none (base model)" for a in adapters)


def _cache_status(cache: PrefixCache | None) -> dict[str, Any] | None:
    if cache is None:
        return None
    return cache.stats() | {"maxEntries": cache.max_entries, "maxTokens": cache.max_tokens}


def warm_up(completer: Completer) -> None:
    """One short generation, so the first real request does not pay for lazy initialisation."""
    completer.complete("def main():\n", 12, max_tokens=2, mode="line")
