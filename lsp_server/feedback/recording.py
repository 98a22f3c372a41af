"""A session's feedback log: which suggestion is which, and writes off the event loop.

`Recording` is the real `lsp_server.session.ports.RecordingLike`: the server makes
one per session and hands it to the `Session`. It owns one `FeedbackRecorder`
(lsp_server.feedback.recorder) and turns what the session reports into its calls:

- One log per workspace root, under the cache home the server passes in
  (`$CODETAILOR_HOME`, which only the model layer computes). Without a workspace
  root (a single file opened without a folder) nothing is recorded: a log belongs
  to a repository (`codetailor feedback stats REPO` reads it), and a stray file
  (a scratch buffer, ~/.ssh/config) has no repository to learn for. Documents
  outside the root are not recorded either. `feedback: false` records nothing.
- Events are labelled `source: "simulated"` when the client introduced itself
  (LSP `clientInfo.name`) as the simulated user (`codetailor bench simulate`),
  `"editor"` otherwise, so a person's statistics leave the simulator's runs out.
- Each shown suggestion gets a random id, unique across restarts; the inline
  item's `codetailor.accepted` command carries it back.
- Every recorder call runs in order on one daemon thread (each event may fsync, which
  must not hold up the event loop); that thread also calls `poll` every `poll_s`
  seconds, so retention checks are answered while the user is idle. `close`
  drains what is queued, within a bound, before the process exits.

Imports neither pygls nor torch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from lsp_server.feedback.events import AcceptKind, NextEditShown
from lsp_server.feedback.log import feedback_dir
from lsp_server.feedback.recorder import FeedbackRecorder, Suggestion
from lsp_server.session.ports import ShownAnswer, ShownNextEdit

log = logging.getLogger("codetailor.feedback")

POLL_S = 10.0  # how often due retention checks are answered
CLOSE_WAIT_S = 2.0  # how long `close` waits for queued events to reach the disk
REMEMBER = 512  # ids of recent suggestions that an acceptance may name
ACCEPT_KINDS: tuple[AcceptKind, ...] = ("full", "word", "line")
SIMULATED_CLIENT = "codetailor-simulate"  # the simulated user's clientInfo.name
_STOP = object()


class Recording:
    """One session's feedback log, or nothing (no cache home, no workspace root)."""

    def __init__(self, home: Path | None, *, poll_s: float = POLL_S) -> None:
        self.home = home
        self.poll_s = poll_s
        self.recorder: FeedbackRecorder | None = None
        self.enabled = False  # the `feedback` setting, as of the last event queued
        self.source = "editor"  # who is typing: "editor", or "simulated"
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ids: OrderedDict[str, bool] = OrderedDict()  # recent ids -> accepted

    def start(self, root: Path | None, enabled: bool, client: str | None = None) -> None:
        """Record to the log of the repository at `root` (None: record nothing), for the
        client named `client` (its LSP clientInfo.name)."""
        if self.home is None or root is None or self.recorder is not None:
            return
        self.source = "simulated" if client == SIMULATED_CLIENT else "editor"
        self.recorder = FeedbackRecorder(feedback_dir(root, self.home), enabled=enabled)
        self.enabled = enabled
        self._thread = threading.Thread(target=self._run, name="codetailor-feedback", daemon=True)
        self._thread.start()

    def set_enabled(self, enabled: bool) -> None:
        """The `feedback` setting changed; off, nothing more is written. Queued, so events
        from before the change are written as they were decided."""
        recorder = self.recorder
        if recorder is not None and enabled != self.enabled:
            self.enabled = enabled
            self._submit(lambda: setattr(recorder, "enabled", enabled))

    # -- events -----------------------------------------------------------------------------

    def shown(self, answer: ShownAnswer) -> str | None:
        """A model answer is shown: its new id (None when nothing is recorded).

        The event is built on the recording thread (`suggestion_of`), `describe` included.
        """
        recorder = self.recorder
        if recorder is None or not self.enabled:
            return None
        id = uuid.uuid4().hex[:16]
        self._ids[id] = False
        while len(self._ids) > REMEMBER:
            self._ids.popitem(last=False)
        source = self.source
        self._submit(lambda: recorder.shown(suggestion_of(id, answer, source)))
        return id

    def suppressed(self, answer: ShownAnswer) -> None:
        """The show-or-stay-quiet filter kept a model answer from the user: log it, with
        its decision, under a new id (it can have no outcome)."""
        recorder = self.recorder
        if recorder is None or not self.enabled:
            return
        id, source = uuid.uuid4().hex[:16], self.source
        self._submit(lambda: recorder.suppressed(suggestion_of(id, answer, source)))

    def next_edit_shown(self, shown: ShownNextEdit) -> str | None:
        """A next edit is shown: its new id (None when nothing is recorded); accepted and
        dismissed like a completion, by that id."""
        recorder = self.recorder
        if recorder is None or not self.enabled:
            return None
        id = self._new_id()
        source = self.source
        self._submit(lambda: recorder.next_edit_shown(next_edit_event(id, shown, source)))
        return id

    def next_edit_suppressed(self, shown: ShownNextEdit) -> None:
        """The show-or-stay-quiet filter kept a next edit from the user: log it, with its
        decision, under a new id (it can have no outcome)."""
        recorder = self.recorder
        if recorder is None or not self.enabled:
            return
        id, source = uuid.uuid4().hex[:16], self.source
        event = next_edit_event(id, shown, source)
        self._submit(lambda: recorder.next_edit_suppressed(event))

    def _new_id(self) -> str:
        id = uuid.uuid4().hex[:16]
        self._ids[id] = False
        while len(self._ids) > REMEMBER:
            self._ids.popitem(last=False)
        return id

    def typed_through(self, id: str | None, chars: int) -> None:
        """Typing-through served suggestion `id`: the user has typed `chars` of it."""
        if self.recorder is None or not self.enabled or id is None:
            return
        if id in self._ids and chars > 0:
            self._submit(partial(self.recorder.typed_through, id, chars))

    def accepted(self, id: object, part: object = "full") -> None:
        """`codetailor.accepted` named suggestion `id`; `part`: "full", "word" or "line"."""
        if self.recorder is None or not self.enabled:
            return
        if not isinstance(id, str) or id not in self._ids:
            return
        kind: AcceptKind = part if part in ACCEPT_KINDS else "full"
        self._ids[id] = True
        self._submit(partial(self.recorder.accepted, id, kind))

    def dismissed(self, id: object, reason: object = None) -> None:
        """The editor says the user hid suggestion `id` without taking it (`codetailor/
        dismissed`); `reason` (a short word: "dismiss", "insert-leave", ...) is kept."""
        if self.recorder is None or not self.enabled:
            return
        if not isinstance(id, str) or self._ids.get(id, True):
            return  # unknown, or taken: a later hide is no dismissal
        why = reason[:32] if isinstance(reason, str) else None
        self._ids[id] = True  # settled: not "superseded" later
        self._submit(partial(self.recorder.dismissed, id, why))

    def replaced(self, id: str | None) -> None:
        """A newer answer took the place of suggestion `id`: superseded unless it was taken."""
        if self.recorder is None or not self.enabled or id is None or self._ids.get(id, True):
            return
        self._submit(partial(self.recorder.superseded, id))

    def changed(self, uri: str, text: str) -> None:
        """The document `uri` now reads `text` (for the retention checks)."""
        if self.recorder is not None and self.enabled:
            self._submit(partial(self.recorder.document_changed, uri, text))

    def status(self) -> dict[str, Any]:
        """For `codetailor.status`: whether it records, where, and how many events are on
        disk (each counted once written and fsynced)."""
        recorder = self.recorder
        if recorder is None:
            return {"recording": False}
        return {
            "recording": self.enabled,
            "log": str(recorder.log.folder),
            "eventsWritten": recorder.log.written,
            "redactions": recorder.redactions,
        }

    # -- the recording thread -----------------------------------------------------------------

    def _submit(self, job: Callable[[], None]) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(job)

    def flush(self, timeout: float = CLOSE_WAIT_S) -> bool:
        """Wait until everything queued so far is written; False if that took too long."""
        done = threading.Event()
        self._submit(done.set)
        return done.wait(timeout) if self._thread is not None else True

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Write what is queued (within `timeout`), then close the log."""
        if self._thread is None:
            return
        self._jobs.put(_STOP)
        self._thread.join(timeout)

    def _run(self) -> None:
        recorder = self.recorder
        assert recorder is not None
        next_poll = time.monotonic() + self.poll_s
        while True:
            try:
                job = self._jobs.get(timeout=max(next_poll - time.monotonic(), 0.0))
            except queue.Empty:
                job = None
            if job is _STOP:
                break
            if job is not None:
                _safely(job)
            if time.monotonic() >= next_poll:
                _safely(recorder.poll)
                next_poll = time.monotonic() + self.poll_s
        recorder.close()


def suggestion_of(id: str, answer: ShownAnswer, source: str) -> Suggestion:
    """What the recorder logs of a shown answer, with the prompt's facts the ports
    (session/ports.py) declare: `completion.context`, `completer.format.name`,
    `.window_tokens` and `.repo`, so preference tuning rebuilds the same prompt."""
    facts = answer.describe()
    completion, completer = answer.completion, answer.completer
    text, offset = answer.text, answer.offset
    return Suggestion(
        id=id,
        uri=answer.uri,
        path=answer.path,
        language=answer.language or None,
        prefix=text[:offset],
        suffix=text[offset:],
        text=completion.text,
        latency_ms=answer.latency_ms,
        # the Completer lists them nearest-last
        context=[(s.path, s.text) for s in reversed(completion.context)],
        model=facts.get("model"),
        adapter=facts.get("adapter"),
        prompt_format=completer.format.name,
        window_tokens=completer.window_tokens,
        repo=completer.repo,
        source=source,
        quiet=answer.quiet,
    )


def next_edit_event(id: str, shown: ShownNextEdit, source: str) -> NextEditShown:
    """What the recorder logs of a shown next edit (built on the recording thread)."""
    facts = shown.describe()
    return NextEditShown(
        id=id,
        uri=shown.uri,
        path=shown.path,
        model=facts.get("model"),
        adapter=facts.get("adapter"),
        prompt_format=shown.prompt_format,
        start_line=shown.start_line,
        original=shown.original,
        current=shown.current,
        updated=shown.updated,
        latency_ms=round(shown.latency_ms, 1),
        source=source,
        quiet=shown.quiet,
    )


def _safely(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:  # noqa: BLE001 - a failed write costs one event, not the session
        log.exception("feedback log: writing an event failed")
