"""What the session needs from the model side and the feedback log, as typing Protocols.

The session never imports the model layer: it talks to "the model host"
through `HostLike` and to its completer through `CompleterLike`. The real
ones are `lsp_server.model.host.ModelHost` and
`lsp_server.completion.completer.Completer`; tests script small fakes
(tests/fixtures/host.py). What the session reads of them is declared here, typed;
what the host must hold crosses as the plain values of lsp_server.spec. It
reports what became of its suggestions to a `RecordingLike` (the real one,
`lsp_server.feedback.Recording`, writes the repository's feedback log on a
thread of its own; `NoRecording` records nothing). The workspace's files on
disk reach its context index through a `ScannerLike` (the real one,
`lsp_server.index.WorkspaceScanner`, scans on a thread of its own;
`NoScanner` looks at nothing on disk).
Pure: no pygls, no torch, no file I/O, no threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from lsp_server.completion.next_edit import NextEditPredictorLike
from lsp_server.completion.prompt import Snippet
from lsp_server.completion.retrieval import ContextIndex
from lsp_server.completion.scope import Mode
from lsp_server.spec import AdapterRef, Holding, ModelSpec

T = TypeVar("T")


class CompletionLike(Protocol):
    """A finished completion: its text, and the facts `codetailor.status` shows about it."""

    @property
    def text(self) -> str: ...

    @property
    def stop_reason(self) -> str:
        """Why generation stopped ("time": the time budget ran out; see engine.Generation)."""
        ...

    @property
    def context(self) -> Sequence[Snippet]:
        """The snippets of other files the prompt held, nearest last."""
        ...

    def as_dict(self) -> dict[str, Any]: ...


class FormatLike(Protocol):
    """A prompt format, as the session names it (lsp_server.completion.prompt)."""

    @property
    def name(self) -> str: ...


class CompleterLike(Protocol):
    """Completes a document at a cursor (`Completer.complete`); runs on the host's worker.

    `format`, `window_tokens` and `repo` are how it lays out a prompt (recorded with a
    shown suggestion, so preference tuning rebuilds the same prompt)."""

    @property
    def format(self) -> FormatLike: ...

    @property
    def window_tokens(self) -> int: ...

    @property
    def repo(self) -> str | None: ...

    def complete(
        self,
        text: str,
        offset: int,
        *,
        max_tokens: int = ...,
        mode: Mode = ...,
        time_budget: float | None = ...,
        prefill_budget: float | None = ...,
        cancel: threading.Event | None = ...,
        path: str | None = ...,
        context: Sequence[Snippet] = ...,
        language_id: str | None = ...,
    ) -> CompletionLike: ...

    def warm(
        self,
        text: str,
        offset: int,
        *,
        path: str | None = ...,
        context: Sequence[Snippet] = ...,
        cancel: threading.Event | None = ...,
    ) -> int:
        """Prefill the prompt for this cursor into the model's cache; the tokens computed."""
        ...


class NextEditorLike(NextEditPredictorLike, Protocol):
    """A next-edit predictor with the window it prefers (`lsp_server.model.next_edit`)."""

    window_lines: int  # lines above + the cursor's + below: 21 on a GPU, 11 on a CPU


class HostLike(Protocol):
    """The model host: (re)loads in the background and runs generation jobs one at a time."""

    @property
    def state(self) -> str:
        """ "idle", "loading", "ready" or "failed"."""
        ...

    @property
    def completer(self) -> CompleterLike | None:
        """The ready completer, or None while nothing is loaded."""
        ...

    @property
    def held(self) -> Holding | None:
        """What the host was last asked to hold (by any session); None: nothing yet."""
        ...

    def completer_for(self, adapter: AdapterRef | None) -> CompleterLike | None:
        """The completer answering for `adapter` (a folder's choice; None: the base
        model): its own once loaded, else the default one; None while nothing is."""
        ...

    def answers_for(self, adapter: AdapterRef | None) -> tuple[AdapterRef | None, str]:
        """Which adapter answers for `adapter` now, and why (for the status)."""
        ...

    def next_edit_for(
        self, adapter: AdapterRef | None, format_name: str | None = None
    ) -> NextEditorLike | None:
        """The next-edit predictor beside `completer_for(adapter)`, in the next-edit
        format `format_name` (None: the default); None while nothing is loaded."""
        ...

    def submit(self, job: Callable[[], T], stop: threading.Event | None = None) -> Future[T]:
        """Run `job` on the generation thread; the future holds its result. `stop`: the
        job's flag, which the host may set to drop it when too many wait."""
        ...

    def submit_background(self, job: Callable[[], T], cancel: threading.Event) -> Future[T]:
        """Run `job` there when no `submit`ted job waits; `cancel` is set when one arrives."""
        ...

    def load(self, spec: ModelSpec, adapters: Sequence[AdapterRef | None] = (None,)) -> None:
        """Drop the current model and load `spec`'s, in the background, with `adapters`
        (the default first; None: the base model)."""
        ...

    def swap(self, spec: ModelSpec, adapters: Sequence[AdapterRef | None] = (None,)) -> None:
        """Switch to `adapters` (the default first) on the same base model, in the
        background, while the current ones keep answering."""
        ...

    def status(self) -> dict[str, Any]:
        """The host's part of `codetailor.status` (state, model, device, cache...)."""
        ...


@dataclass(frozen=True)
class ShownAnswer:
    """A model answer the session showed, as it hands it to the feedback log."""

    uri: str
    path: str | None  # relative to the workspace root
    language: str  # the document's language id ("" when the editor gave none)
    text: str  # the document as the prompt saw it
    offset: int  # the cursor in `text`
    completion: CompletionLike
    completer: CompleterLike  # the one that answered (its prompt format, window, repo)
    latency_ms: float
    # The host's status ("model", "adapter"); called where the event is built, off the loop.
    describe: Callable[[], dict[str, Any]]
    quiet: dict[str, Any] | None = None  # the show-or-stay-quiet decision (session/quiet.py)


@dataclass(frozen=True)
class ShownNextEdit:
    """A next edit the session showed, as it hands it to the feedback log."""

    uri: str
    path: str | None  # relative to the workspace root
    start_line: int  # the window's first document line
    original: str  # the window before the recent edits
    current: str  # the window as the model saw it
    updated: str  # the window as the model rewrote it
    prompt_format: str | None
    latency_ms: float
    describe: Callable[[], dict[str, Any]]  # the host's status ("model", "adapter")
    quiet: dict[str, Any] | None = None  # the show-or-stay-quiet decision (session/quiet.py)
    language: str = ""  # the document's language id


class RecordingLike(Protocol):
    """The feedback log of one session: ids for shown answers, and what became of them.

    Every method returns at once (the writing happens elsewhere) and does nothing
    while nothing is recorded (no workspace root, `feedback: false`).
    """

    def start(self, root: Path | None, enabled: bool, client: str | None = None) -> None:
        """Record to the log of the repository at `root` (None: record nothing), for the
        client named `client` (its LSP clientInfo.name)."""
        ...

    def set_enabled(self, enabled: bool) -> None:
        """The `feedback` setting changed."""
        ...

    def shown(self, answer: ShownAnswer) -> str | None:
        """A model answer is shown: its new id (None when nothing is recorded)."""
        ...

    def suppressed(self, answer: ShownAnswer) -> None:
        """The show-or-stay-quiet filter kept a model answer from the user."""
        ...

    def next_edit_shown(self, shown: ShownNextEdit) -> str | None:
        """A next edit is shown: its new id (None when nothing is recorded)."""
        ...

    def next_edit_suppressed(self, shown: ShownNextEdit) -> None:
        """The show-or-stay-quiet filter kept a next edit from the user."""
        ...

    def typed_through(self, id: str | None, chars: int) -> None:
        """Typing-through served suggestion `id`: the user has typed `chars` of it."""
        ...

    def accepted(self, id: object, part: object = "full") -> None:
        """`codetailor.accepted` named suggestion `id`; `part`: "full", "word" or "line"."""
        ...

    def dismissed(self, id: object, reason: object = None) -> None:
        """The editor says the user hid suggestion `id` without taking it."""
        ...

    def replaced(self, id: str | None) -> None:
        """A newer answer took the place of suggestion `id`."""
        ...

    def changed(self, uri: str, text: str) -> None:
        """The document `uri` now reads `text`."""
        ...

    def status(self) -> dict[str, Any]:
        """The log's part of `codetailor.status`."""
        ...

    def close(self) -> None:
        """Write what is queued (within a bound), then stop."""
        ...


class NoRecording:
    """A session without a feedback log: every call does nothing."""

    def start(self, root: Path | None, enabled: bool, client: str | None = None) -> None:
        return None

    def set_enabled(self, enabled: bool) -> None:
        return None

    def shown(self, answer: ShownAnswer) -> str | None:
        return None

    def suppressed(self, answer: ShownAnswer) -> None:
        return None

    def next_edit_shown(self, shown: ShownNextEdit) -> str | None:
        return None

    def next_edit_suppressed(self, shown: ShownNextEdit) -> None:
        return None

    def typed_through(self, id: str | None, chars: int) -> None:
        return None

    def accepted(self, id: object, part: object = "full") -> None:
        return None

    def dismissed(self, id: object, reason: object = None) -> None:
        return None

    def replaced(self, id: str | None) -> None:
        return None

    def changed(self, uri: str, text: str) -> None:
        return None

    def status(self) -> dict[str, Any]:
        return {"recording": False}

    def close(self) -> None:
        return None


class ScannerLike(Protocol):
    """The workspace index's disk side: scans a root's files into `index` in the background,
    and says where paths lead on disk. Every method returns at once but `wait`."""

    @property
    def index(self) -> ContextIndex:
        """The index it feeds (the session's cross-file context)."""
        ...

    @property
    def progress(self) -> tuple[int, int]:
        """(files done, files listed) of the current scan."""
        ...

    def folder(self, path: str) -> Path | None:
        """`path` resolved when it is a folder (a root to take); None otherwise."""
        ...

    def locate(self, path: str) -> Path | None:
        """Where `path` really is: made absolute, symlinks resolved; None for a name the
        file system cannot take (such a folder is skipped)."""
        ...

    def scan(self, root: Path) -> None:
        """Index the files under `root` in the background (an earlier scan is told to stop)."""
        ...

    def stop(self) -> None:
        """Tell the scan to stop, without waiting for it."""
        ...

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the scan, bounded; True when it has finished."""
        ...


class NoScanner:
    """A session without the disk: no root is taken (nothing is scanned), and paths are
    taken as written. Its index holds the open documents only."""

    def __init__(self, index: ContextIndex | None = None) -> None:
        self.index = index if index is not None else ContextIndex()
        self.progress = (0, 0)

    def folder(self, path: str) -> Path | None:
        return None

    def locate(self, path: str) -> Path | None:
        return Path(path)

    def scan(self, root: Path) -> None:
        return None

    def stop(self) -> None:
        return None

    def wait(self, timeout: float | None = None) -> bool:
        return True
