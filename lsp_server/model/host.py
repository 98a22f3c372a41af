"""The model behind the server: loading in the background, and one thread that generates.

`ModelHost` owns the loaded model and its `Completer`. Loading (and reloading
when the settings change) runs on a loader thread and reports its stages
through a callback; completions run one at a time on a worker thread, so the
server's event loop never waits for the model. Both threads are daemons: a
client that goes away never keeps the process alive. No pygls here.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

from lsp_server.errors import CodetailorError
from lsp_server.session.settings import Settings

log = logging.getLogger("codetailor.service")

State = Literal["idle", "loading", "ready", "failed"]
# kind ("begin", "report", "end", "failed", "problem"), message, percentage
EventCallback = Callable[[str, str, "int | None"], None]


class Worker:
    """A daemon thread that runs submitted calls one after another."""

    def __init__(self, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._queue.put((future, fn))
        return future

    def stop(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            future, fn = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to whoever awaits it
                future.set_exception(exc)


@dataclass(frozen=True)
class Loaded:
    """A ready completer and the facts `codetailor.status` reports about it."""

    completer: Any
    model: Any  # LoadedModel
    prompt_format: str


def load_completer(settings: Settings, trust_remote_code: bool, report: EventCallback) -> Loaded:
    """Load the model the settings name and build its Completer (the real loader)."""
    from lsp_server.model.loading import load_model
    from lsp_server.model.wiring import build_completer

    loaded = load_model(
        settings.model,
        adapter=settings.adapter,
        device=settings.device,
        dtype=settings.dtype,
        trust_remote_code=trust_remote_code,
    )
    report("report", f"loaded {loaded.name} on {loaded.device} in {loaded.load_seconds:.1f} s", 80)
    try:
        completer = build_completer(loaded, prompt_format=settings.prompt_format)
    except CodetailorError as exc:
        if not settings.prompt_format:
            raise
        report("problem", f"setting 'promptFormat': {exc}; using the model's own format", None)
        completer = build_completer(loaded)
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
        self._loads = Worker("codetailor-loader")
        self.generator = Worker("codetailor-generate")

    @property
    def completer(self) -> Any | None:
        loaded = self.loaded
        return loaded.completer if loaded is not None else None

    def load(self, settings: Settings) -> None:
        """Drop the current model and load the one `settings` name, in the background."""
        self._ticket += 1
        ticket = self._ticket
        self.loaded, self.state, self.error, self.settings = None, "loading", None, settings
        self._loads.submit(lambda: self._load(ticket, settings))

    def _load(self, ticket: int, settings: Settings) -> None:
        if ticket != self._ticket:
            return  # a newer load was asked for while this one waited
        from lsp_server.model.loading import DEFAULT_MODEL

        name = settings.model or DEFAULT_MODEL
        self.on_event("begin", f"loading {name}", 0)
        started = time.monotonic()
        try:
            loaded = self.loader(settings, self.trust_remote_code, self.on_event)
            self.on_event("report", "warming up", 90)
            warm_up(loaded.completer)
        except Exception as exc:  # noqa: BLE001 - the server reports it and stays up
            message = str(exc) if isinstance(exc, CodetailorError) else repr(exc)
            traceback = not isinstance(exc, CodetailorError)  # a user mistake needs no traceback
            log.error("cannot load %s: %s", name, message, exc_info=traceback)
            if ticket == self._ticket:
                self.state, self.error = "failed", message
            self.on_event("failed", f"cannot load {name}: {message}", None)
            return
        if ticket != self._ticket:
            return
        self.loaded, self.state = loaded, "ready"
        seconds = time.monotonic() - started
        where = loaded.model.device
        self.on_event("end", f"ready: {loaded.model.name} on {where} in {seconds:.1f} s", 100)

    def status(self) -> dict[str, Any]:
        loaded = self.loaded
        model = loaded.model if loaded else None
        engine = loaded.completer.engine if loaded else None
        cache = engine.cache if engine is not None else None
        return {
            "state": self.state,
            "error": self.error,
            "model": model.name if model else (self.settings.model if self.settings else None),
            "adapter": str(model.adapter.path) if model and model.adapter else None,
            "device": model.device if model else None,
            "dtype": model.dtype if model else None,
            "promptFormat": loaded.prompt_format if loaded else None,
            "loadSeconds": round(model.load_seconds, 2) if model else None,
            "cache": (
                cache.stats() | {"maxEntries": cache.max_entries, "maxTokens": cache.max_tokens}
                if cache is not None
                else None
            ),
        }


def warm_up(completer: Any) -> None:
    """One short generation, so the first real request does not pay for lazy initialisation."""
    completer.complete("def main():\n", 12, max_tokens=2, mode="line")
