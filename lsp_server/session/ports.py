"""What the session needs from the model side, as typing Protocols.

The session never imports the model layer: it talks to "the model host"
through `HostLike` and to its completer through `CompleterLike`. The real
ones are `lsp_server.model.host.ModelHost` and
`lsp_server.completion.completer.Completer`; tests script small fakes
(tests/test_session.py). Pure: no pygls, no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from lsp_server.completion.prompt import Snippet
from lsp_server.completion.scope import Mode
from lsp_server.session.settings import Settings

T = TypeVar("T")


class CompletionLike(Protocol):
    """A finished completion: its text, and the facts `codetailor.status` shows about it."""

    @property
    def text(self) -> str: ...

    def as_dict(self) -> dict[str, Any]: ...


class CompleterLike(Protocol):
    """Completes a document at a cursor (`Completer.complete`); runs on the host's worker."""

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

    def completer_for(self, adapter: str | None) -> CompleterLike | None:
        """The completer answering for `adapter` (a folder's choice; None: the base
        model): its own once loaded, else the default one; None while nothing is."""
        ...

    def answers_for(self, adapter: str | None) -> tuple[str | None, str]:
        """Which adapter answers for `adapter` now, and why (for the status)."""
        ...

    def submit(self, job: Callable[[], T]) -> Future[T]:
        """Run `job` on the generation thread; the future holds its result."""
        ...

    def submit_background(self, job: Callable[[], T], cancel: threading.Event) -> Future[T]:
        """Run `job` there when no `submit`ted job waits; `cancel` is set when one arrives."""
        ...

    def load(self, settings: Settings, adapters: Sequence[str | None] = ()) -> None:
        """Drop the current model and load the one `settings` name, in the background,
        with `settings.adapter` (the default) and the other `adapters` the folders use."""
        ...

    def swap(self, settings: Settings, adapters: Sequence[str | None] = ()) -> None:
        """Switch to `settings.adapter` and `adapters` on the same base model in the
        background while the current ones keep answering."""
        ...

    def status(self) -> dict[str, Any]:
        """The host's part of `codetailor.status` (state, model, device, cache...)."""
        ...
