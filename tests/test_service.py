"""The model host with a fake loader: background loads, reported stages, failures, reloads."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from lsp_server.errors import CodetailorError
from lsp_server.model.engine import Engine, PrefixCache
from lsp_server.model.factory import Loaded
from lsp_server.model.host import ModelHost, Worker
from lsp_server.spec import AdapterRef, ModelSpec, folder


class FakeCompleter:
    def __init__(self) -> None:
        self.engine = Engine(None, cache=PrefixCache(max_entries=4, max_tokens=100))  # type: ignore[arg-type]
        self.calls = 0

    def complete(self, text, offset, **kwargs):
        self.calls += 1


def fake_loader(gate: threading.Event | None = None):
    def load(spec: ModelSpec, adapters=(None,), *, report) -> Loaded:
        if gate is not None:
            gate.wait(5)
        if spec.model == "broken" or folder(adapters[0]) == "broken":
            raise CodetailorError("model path broken does not exist")
        model = SimpleNamespace(
            name=spec.model, device="cpu", dtype="float32", adapter=None, load_seconds=0.1
        )
        report("report", "weights loaded", 80)
        return Loaded(FakeCompleter(), model, "prefix-only")

    return load


class Events:
    """Records the host's events; `wait_final` waits (bounded) for the load to end or fail."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int | None]] = []
        self.final = threading.Event()

    def __call__(self, kind: str, message: str, percentage: int | None) -> None:
        self.seen.append((kind, message, percentage))
        if kind in ("end", "failed"):
            self.final.set()

    def wait_final(self) -> None:
        assert self.final.wait(5), f"the load did not end: {self.seen}"

    @property
    def kinds(self) -> list[str]:
        return [kind for kind, _, _ in self.seen]


def test_a_load_runs_in_the_background_and_reports_its_stages():
    events = Events()
    gate = threading.Event()
    host = ModelHost(events, loader=fake_loader(gate))
    host.load(ModelSpec(model="tiny"))
    assert host.state == "loading" and host.completer is None  # returned at once
    gate.set()
    events.wait_final()
    assert host.state == "ready"
    assert events.kinds == ["begin", "report", "report", "end"]
    assert host.completer.calls == 1  # the warm-up
    status = host.status()
    assert status["model"] == "tiny" and status["cache"]["maxEntries"] == 4


def test_a_failed_load_is_one_event_and_a_failed_state():
    events = Events()
    host = ModelHost(events, loader=fake_loader())
    host.load(ModelSpec(model="broken"))
    events.wait_final()
    assert host.state == "failed"
    assert host.completer is None and "does not exist" in host.error
    assert events.kinds == ["begin", "failed"]


def test_a_newer_load_wins_over_one_still_waiting():
    events = Events()
    gate = threading.Event()
    host = ModelHost(events, loader=fake_loader(gate))
    host.load(ModelSpec(model="first"))
    host.load(ModelSpec(model="second"))
    gate.set()
    events.wait_final()
    assert host.state == "ready" and host.status()["model"] == "second"
    assert events.kinds.count("end") == 1  # the first load ended without a word


def test_a_swap_loads_behind_the_answering_model_then_switches():
    events = Events()
    host = ModelHost(events, loader=fake_loader())
    host.load(ModelSpec(model="tiny"), [None])
    events.wait_final()
    old = host.completer
    events.final.clear()
    gate = threading.Event()
    host.loader = fake_loader(gate)
    host.swap(ModelSpec(model="tiny"), [AdapterRef("/adapters/new")])
    # Meanwhile the old generation keeps answering, and the status says a swap is under way.
    assert host.state == "ready" and host.completer is old and host.status()["swapping"]
    gate.set()
    events.wait_final()
    status = host.status()
    assert host.completer is not old and host.completer.engine is not old.engine  # own cache
    assert status["swaps"] == 1 and status["lastSwapSeconds"] >= 0 and not status["swapping"]
    assert status["loadedAt"] is not None
    assert events.seen[-1][0] == "end" and "switched to adapter /adapters/new" in events.seen[-1][1]


def test_a_failed_swap_leaves_the_old_model_answering():
    events = Events()
    host = ModelHost(events, loader=fake_loader())
    host.load(ModelSpec(model="tiny"))
    events.wait_final()
    old = host.completer
    events.final.clear()
    host.swap(ModelSpec(model="tiny"), [AdapterRef("broken")])
    events.wait_final()
    assert host.state == "ready" and host.completer is old
    assert host.status()["swaps"] == 0 and "does not exist" in host.error


def test_the_worker_runs_jobs_in_order_and_skips_cancelled_ones():
    worker = Worker("test")
    gate = threading.Event()
    order = []
    first = worker.submit(lambda: gate.wait(5) and order.append(1))
    skipped = worker.submit(lambda: order.append(2))
    third = worker.submit(lambda: order.append(3) or "done")
    assert skipped.cancel()
    gate.set()
    assert third.result(5) == "done" and first.done()
    assert order == [1, 3]
    worker.stop()


def test_background_jobs_run_only_when_no_ordinary_job_waits():
    worker = Worker("test")
    gate = threading.Event()
    order: list[str] = []
    first = worker.submit(lambda: gate.wait(5) and order.append("first"))
    background = worker.submit_background(lambda: order.append("background"), threading.Event())
    ordinary = worker.submit(lambda: order.append("ordinary"))
    gate.set()
    background.result(5)
    assert first.done() and ordinary.done()
    assert order == ["first", "ordinary", "background"]
    worker.stop()


def test_an_ordinary_job_makes_the_running_background_job_yield():
    worker = Worker("test")
    started, cancel = threading.Event(), threading.Event()

    def warm() -> str:
        started.set()
        return "yielded" if cancel.wait(5) else "ran out"

    background = worker.submit_background(warm, cancel)
    assert started.wait(5)
    ordinary = worker.submit(lambda: "answered")
    assert background.result(5) == "yielded"
    assert ordinary.result(5) == "answered"
    worker.stop()


def test_stopping_runs_the_submitted_jobs_and_drops_background_ones():
    worker = Worker("test")
    gate = threading.Event()
    first = worker.submit(lambda: gate.wait(5))
    background = worker.submit_background(lambda: "warm", threading.Event())
    second = worker.submit(lambda: "second")
    worker.stop()
    gate.set()
    assert first.result(5) and second.result(5) == "second"
    assert background.cancelled()  # stop() came while the first job held the thread
