"""`$/progress` for model loading: create a token, then begin, report and end.

The model host reports stages from its loader thread; the server hands them to
`LoadProgress.event` on the event loop. Nothing is sent before the client has
said `initialized` and answered `window/workDoneProgress/create`.
"""

from __future__ import annotations

import uuid
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer


class LoadProgress:
    """One load's progress at a time; a new "begin" starts a new token."""

    def __init__(self, ls: LanguageServer) -> None:
        self.ls = ls
        self.enabled = False  # set by `initialized` when the client supports progress
        self._token: str | None = None
        self._created = False
        self._pending: list[tuple[str, str, int | None]] = []

    def start(self, client_supports: bool) -> None:
        self.enabled = client_supports
        if self.enabled and self._pending:
            self._create()

    def event(self, kind: str, message: str, percentage: int | None) -> None:
        if kind == "begin":
            self._token, self._created, self._pending = None, False, []
        self._pending.append((kind, message, percentage))
        if not self.enabled:
            return
        if self._token is None:
            self._create()
        elif self._created:
            self._flush()

    def _create(self) -> None:
        token = self._token = f"codetailor-load-{uuid.uuid4().hex[:8]}"

        def created(*_: Any) -> None:
            if token == self._token:
                self._created = True
                self._flush()

        self.ls.work_done_progress.create(token, callback=created)

    def _flush(self) -> None:
        assert self._token is not None
        progress = self.ls.work_done_progress
        for kind, message, percentage in self._pending:
            if kind == "begin":
                value: Any = types.WorkDoneProgressBegin(
                    title="Codetailor", message=message, percentage=percentage
                )
                progress.begin(self._token, value)
            elif kind == "report":
                value = types.WorkDoneProgressReport(message=message, percentage=percentage)
                progress.report(self._token, value)
            else:
                progress.end(self._token, types.WorkDoneProgressEnd(message=message))
        self._pending = []
