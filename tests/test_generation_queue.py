"""The generation queue is bounded (issue 28: a request behind 200 others waited 7 s):
past `MAX_WAITING`, superseded requests are dropped first, then the oldest."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from lsp_server.model.host import MAX_WAITING, Worker

BOUND_S = 10.0


def request(ran: list[int], n: int, stop: threading.Event) -> Callable[[], int | None]:
    def job() -> int | None:
        if stop.is_set():  # as the session's jobs do: a stopped request does no work
            return None
        ran.append(n)
        return n

    return job


def blocked(worker: Worker) -> threading.Event:
    """Keep the worker busy until the returned event is set."""
    release, started = threading.Event(), threading.Event()

    def busy() -> None:
        started.set()
        release.wait(BOUND_S)

    worker.submit(busy)
    assert started.wait(BOUND_S)
    return release


def test_a_request_behind_200_waits_for_at_most_the_bound() -> None:
    worker = Worker("test-generate")
    release = blocked(worker)
    ran: list[int] = []
    stops = [threading.Event() for _ in range(201)]
    futures = [worker.submit(request(ran, n, stop), stop) for n, stop in enumerate(stops)]
    release.set()
    assert futures[-1].result(BOUND_S) == 200
    assert len(ran) <= MAX_WAITING  # not the 200 before it
    assert ran == sorted(ran) and ran[-1] == 200  # the newest ran; the survivors in order
    dropped = [n for n, f in enumerate(futures) if f.result(BOUND_S) is None]
    assert dropped == list(range(201 - MAX_WAITING))  # the oldest were dropped
    assert all(stops[n].is_set() for n in dropped)
    worker.stop()


def test_superseded_requests_are_dropped_before_waiting_ones() -> None:
    worker = Worker("test-generate")
    release = blocked(worker)
    ran: list[int] = []
    stops = [threading.Event() for _ in range(MAX_WAITING + 1)]
    futures: list[Future[int | None]] = []
    for n, stop in enumerate(stops[:MAX_WAITING]):
        futures.append(worker.submit(request(ran, n, stop), stop))
    stops[5].set()  # superseded by a newer request for its document
    futures.append(worker.submit(request(ran, MAX_WAITING, stops[-1]), stops[-1]))
    release.set()
    assert futures[-1].result(BOUND_S) == MAX_WAITING
    assert [f.result(BOUND_S) for f in futures[:5]] == [0, 1, 2, 3, 4]  # the oldest stay
    assert ran == [n for n in range(MAX_WAITING + 1) if n != 5]
    worker.stop()


def test_calls_without_a_stop_flag_are_never_dropped() -> None:
    worker = Worker("test-generate")
    release = blocked(worker)
    futures = [worker.submit(lambda n=n: n) for n in range(MAX_WAITING * 2)]  # type: ignore[misc]
    release.set()
    assert [f.result(BOUND_S) for f in futures] == list(range(MAX_WAITING * 2))
    worker.stop()
