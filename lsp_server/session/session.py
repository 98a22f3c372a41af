"""One editor's session: the completion policy, in plain values.

`Session` holds what a connected client shares with the server (settings, open
documents, the completions shown, the workspace, in-flight requests, counts)
and decides every answer: typing-through, supersede and cancel, the
stale-answer check, empty answers by reason, acceptances and the status. The
work done ahead of requests is its `Ahead` (ahead.py), the jobs the model runs
its `Jobs` (jobs.py), which model and completer answer its `ModelChoice`
(model_choice.py; asked once per request), the empty answers' reasons and the
status' counts are in counts.py. The LSP layer (`lsp_server.lsp.handlers`) only
translates LSP params into these calls and the answers back. Pure: no pygls,
no torch; the model is reached through `HostLike` (lsp_server.session.ports),
so tests script it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from lsp_server import __version__
from lsp_server.completion.scope import completion_helps
from lsp_server.session.accepts import AcceptLedger
from lsp_server.session.ahead import Ahead, WarmPlan, edit_cursor
from lsp_server.session.counts import EMPTY_FOR_STOP, counts_status
from lsp_server.session.documents import Change, Documents, looks_binary, offset_at
from lsp_server.session.edit_history import HeadText
from lsp_server.session.folders import WorkspaceFolders
from lsp_server.session.jobs import Inflight, Jobs, Request, dropped_because
from lsp_server.session.model_choice import READY_WAIT_S, AdapterSource, ModelChoice
from lsp_server.session.next_edits import NextEdits
from lsp_server.session.ports import (
    CompleterLike,
    CompletionLike,
    HostLike,
    NoRecording,
    RecordingLike,
    ScannerLike,
)
from lsp_server.session.quiet import QuietGate, QuietSourceLike
from lsp_server.session.settings import (
    Settings,
    client_draws_next_edits,
    parse_settings,
    unknown_keys,
)
from lsp_server.session.typing_through import ShownCompletions
from lsp_server.session.workspace import WorkspaceContext
from lsp_server.spec import ModelSpec

log = logging.getLogger("codetailor.session")


class Session:
    """Settings, documents and the completion path for one client at a time."""

    def __init__(
        self,
        startup: Settings,
        host: HostLike,
        *,
        scanner: ScannerLike | None = None,
        shown_capacity: int = 16,
        model_allowed: Callable[[str], bool] | None = None,
        engines_allowed: bool = True,
        ready_wait_s: float = READY_WAIT_S,
        recording: RecordingLike | None = None,
        adapters: AdapterSource | None = None,
        loading: ModelSpec | None = None,
        head_text: HeadText | None = None,
        quiet: QuietSourceLike | None = None,
    ) -> None:
        """`recording` keeps the feedback log (`lsp_server.feedback.Recording`); None: no log.
        `scanner` reads the workspace's files into the context index and resolves paths
        (`lsp_server.index.WorkspaceScanner`); None: nothing on disk is looked at.
        `model_allowed`, `engines_allowed`, `adapters` and `loading`: see `ModelChoice`.
        `head_text` reads a file at git HEAD (`lsp_server.repo.head`), for next edits.
        `quiet`: the repository's show-or-stay-quiet filter (None: the global rule)."""
        self.startup = startup  # the command line's settings: what a null setting returns to
        self.settings = startup
        self.host = host
        self.documents = Documents()
        self.shown = ShownCompletions(shown_capacity)
        self.workspace = WorkspaceContext(scanner)
        self.folders: WorkspaceFolders = self.workspace.workspace  # root and folders: the one copy
        # Which model and adapters the host holds, and which completer answers a document.
        self.models = ModelChoice(
            host,
            startup,
            workspace=self.folders,
            loading=loading,
            model_allowed=model_allowed,
            engines_allowed=engines_allowed,
            source=adapters,
        )
        self.inflight: dict[str, Inflight] = {}
        self.counts: Counter[str] = Counter()  # requests, shown, accepted...
        self.accepts = AcceptLedger()  # which shown suggestions an accept may still count for
        self.empty: Counter[str] = Counter()  # the empty answers, by reason (counts.py)
        self.ready_wait_s = ready_wait_s
        self.jobs = Jobs(self.documents, self.workspace)
        self.ahead = Ahead(host, self.documents, self.jobs)
        # The local feedback log of the workspace's repository (see lsp_server.feedback).
        self.recording: RecordingLike = recording if recording is not None else NoRecording()
        # Per document, the completer whose answers `shown` holds.
        self._answering: dict[str, CompleterLike | None] = {}
        self.next_edits = NextEdits(self, head_text)  # next-edit suggestions, their history
        self.draws_next_edits = False  # the client said it draws next edits itself
        self.quiet = QuietGate(self, quiet)  # show or stay quiet, and the log of it (quiet.py)

    @property
    def encoding(self) -> str:
        """The negotiated position encoding ("utf-16" unless the client chose another)."""
        return self.documents.encoding

    # -- connection and settings ------------------------------------------------------------

    def initialize(
        self,
        options: Any,
        root_uri: str | None,
        encoding: str,
        client: str | None = None,
        folders: Iterable[str] = (),
    ) -> list[str]:
        """A client connected: take its encoding, settings and workspace; returns problems.

        `client` is its name (LSP clientInfo), which labels its feedback events; its
        options may say it draws next edits itself (`client_draws_next_edits`).
        `root_uri` is the workspace served (the first folder: its context and feedback
        log); each of the `folders` (all workspace folders) is answered by its own
        adapter, documents outside them by the first folder's.
        """
        self.documents.encoding = encoding
        self.draws_next_edits = client_draws_next_edits(options)
        self.folders.open(root_uri, folders)
        problems = self.configure(options, base=self.startup)
        self.workspace.index_root(scan=self.settings.context)
        self.recording.start(self.workspace.root, self.settings.feedback, client)
        self.quiet.source.start(self.workspace.root)
        return problems

    def configure(self, raw: Any, *, base: Settings | None = None) -> list[str]:
        """Apply settings as a client sent them (on top of `base`, default the current ones).

        Returns one line per invalid value (the previous value is kept for it).
        """
        base = base or self.settings
        settings, problems = parse_settings(raw, base, self.startup)
        settings, refused = self.models.permit(settings, base)
        problems += refused
        if ignored := unknown_keys(raw):
            log.info("ignoring unknown settings: %s", ", ".join(map(str, ignored)))
        self.apply_settings(settings)
        return problems

    def apply_settings(self, settings: Settings) -> None:
        """Take new settings; a different model (or prompt format) loads in the background,
        and when only the adapters change under a ready model, the host swaps them in while
        it keeps answering (see `ModelChoice.apply`)."""
        self.settings = settings
        self.recording.set_enabled(settings.feedback)
        if self.models.apply(settings) == "load":
            self.cancel_all("settings")
            self.shown = ShownCompletions(self.shown.capacity)
        if not settings.enable:
            self.cancel_all("settings")

    def change_folders(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Workspace folders were added or removed (URIs): choose their adapters again; the
        host loads new ones in the background while the current ones keep answering."""
        self.folders.change(added, removed)
        self.apply_settings(self.settings)

    def check_adapters(self, *, now: float | None = None) -> bool:
        """Look (at most twice per ADAPTER_POLL_S) whether the registry changed; if it did,
        choose again, and swap when another adapter now answers. True when it looked."""
        looked, changed = self.models.registry_changed(now)
        if changed:
            self.apply_settings(self.settings)
        return looked

    def disconnect(self) -> None:
        """The client has gone: stop its generations and its workspace scan.

        A session is made per connection and dropped with it; the scan is only
        told to stop (`WorkspaceScanner.stop` never joins it), so a scan stuck in a
        read never holds up the caller (the event loop).
        """
        self.cancel_all("disconnected")
        self.workspace.stop()
        self.ahead.plan = WarmPlan()
        self.recording.close()

    # -- documents ------------------------------------------------------------------------

    def open(self, uri: str, text: str, version: int, language_id: str = "") -> None:
        """A document opened (and focused): warm the window at its end."""
        self.documents.open(uri, text, version, language_id)
        self.next_edits.opened(uri, text)
        self.workspace.opened(uri)
        self.ahead.plan.opened(uri, text.count("\n"))
        self.ahead.warm(uri, len(text), self.models.completer(uri), self.settings)

    def change(self, uri: str, version: int, changes: Iterable[Change]) -> None:
        """Apply edits; warm the window at the cursor if they moved it somewhere new."""
        self.cancel(uri, "stale")  # whatever it was computing is for text that no longer exists
        changes = list(changes)
        old = doc.text if (doc := self.documents.get(uri)) is not None else None
        if not self.documents.change(uri, version, changes):
            self.counts["unknown_document_edits"] += 1
            return
        self.workspace.changed(uri)
        doc = self.documents.get(uri)
        self.next_edits.changed(uri, old, doc.text if doc is not None else "")
        if doc is not None and self.workspace.in_workspace(uri):
            self.recording.changed(uri, doc.text)
        cursor = edit_cursor(doc.text, changes[-1], self.encoding) if doc and changes else None
        if cursor is not None and self.ahead.plan.moved(uri, cursor[1], cursor[2]):
            self.ahead.warm(uri, cursor[0], self.models.completer(uri), self.settings)

    def cursor(self, uri: str, line: int, character: int) -> None:
        """The editor's cursor is at (line, character): warm the window there if it is new."""
        self.ahead.counts["cursors"] += 1
        doc = self.documents.get(uri)
        if doc is None or self.host.completer is None:
            return  # nothing to warm with yet: the plan keeps only windows it prepared
        if self.ahead.plan.moved(uri, line, 0):
            offset = offset_at(doc.text, line, character, self.encoding)
            self.ahead.warm(uri, offset, self.models.completer(uri), self.settings)

    def close(self, uri: str) -> None:
        self.cancel(uri, "closed")
        self.next_edits.closed(uri)
        self.ahead.closed(uri)
        self.shown.forget(uri)
        self._answering.pop(uri, None)
        self.documents.close(uri)
        self.workspace.closed(uri)

    # -- cancellation ---------------------------------------------------------------------

    def cancel(self, uri: str, reason: str) -> None:
        """Stop the generation running for `uri`, if any (within one decoding step)."""
        inflight = self.inflight.pop(uri, None)
        if inflight is not None:
            inflight.stop(reason)

    def cancel_all(self, reason: str) -> None:
        for inflight in self.inflight.values():
            inflight.stop(reason)
        self.inflight.clear()
        self.next_edits.cancel_all(reason)
        self.ahead.drop_all()

    # -- completion -----------------------------------------------------------------------

    def request_at(self, uri: str, line: int, character: int) -> Request | None:
        """The document and offset for an LSP position; None for a document that is not open."""
        doc = self.documents.get(uri)
        if doc is None:
            self._answer_empty("unknown_document")
            return None
        offset = offset_at(doc.text, line, character, self.encoding)
        return Request(uri, doc.text, offset, doc.revision, doc.language_id)

    def _answer_empty(self, reason: str) -> str:
        """Count an empty answer under its reason (one of EMPTY_REASONS); the answer."""
        self.empty[reason] += 1
        return ""

    def _answer_at_once(self, request: Request) -> str | None:
        """The answer that needs no model (disabled, binary, typed through, no help); else None."""
        if not self.settings.enable:
            return self._answer_empty("disabled")
        if looks_binary(request.text):
            return self._answer_empty("binary")
        rest = self.shown.lookup(request.uri, request.text, request.offset)
        if rest is not None:
            self.counts["typed_through"] += 1
            shown = self.shown.current(request.uri)
            if shown is not None:
                self.recording.typed_through(shown.id, request.offset - shown.offset)
            return rest
        if not completion_helps(request.text[request.offset :]):
            return self._answer_empty("no_help")
        return None

    async def complete(self, request: Request) -> str:
        """The completion text at the request's cursor, or "" (disabled, not ready, stale...).

        While the model loads, the request waits for it (up to `ready_wait_s`;
        a newer request or an edit ends the wait). Cancelling the awaiting task
        ($/cancelRequest) stops the model within one decoding step and raises
        `asyncio.CancelledError` as usual.
        """
        self.counts["requests"] += 1
        started = time.perf_counter()
        self.check_adapters()
        completer = self._answering_for(request.uri)
        answer = self._answer_at_once(request)
        if answer is not None:
            return answer
        inflight = self._take_over(request)
        try:
            completion, completer = await self._completion(request, inflight, completer)
        except asyncio.CancelledError:  # $/cancelRequest: stop the model within one step
            inflight.stop("cancelled")
            self._answer_empty("cancelled")
            raise
        except Exception:  # noqa: BLE001 - a failed generation answers empty, the server lives on
            log.exception("generation failed")
            return self._answer_empty("failed")
        finally:
            if self.inflight.get(request.uri) is inflight:
                del self.inflight[request.uri]
        if completion is None and not inflight.cancel.is_set():
            return self._answer_empty("not_ready")
        latency_ms = (time.perf_counter() - started) * 1000
        return self._finish(request, inflight, completion, completer, latency_ms)

    def _answering_for(self, uri: str) -> CompleterLike | None:
        """Which completer answers this request for `uri`, asked once per request. When
        another model or adapter answers than last time here, what the previous one
        suggested (shown completion, next suggestion) is dropped, so typing-through
        never serves it."""
        completer = self.models.completer(uri)
        if completer is not self._answering.get(uri):
            self._answering[uri] = completer
            self.shown.forget(uri)
            self.ahead.forget_prediction(uri)
        return completer

    def _take_over(self, request: Request) -> Inflight:
        """Make `request` the one running for its document: it supersedes the running one
        (and a next edit an empty completion asked for there), and prefills its window
        itself, continuing the warm there (which stops)."""
        self.ahead.plan.asked(request.uri, request.text.count("\n", 0, request.offset))
        self.ahead.stop_warm(request.uri)
        self.cancel(request.uri, "superseded")
        self.next_edits.cancel_fallback(request.uri)
        inflight = self.inflight[request.uri] = Inflight()
        return inflight

    async def suggest(self, request: Request) -> tuple[str, str | None]:
        """`complete`, and the id of the suggestion answered (the feedback log's where it
        records; None: no suggestion), which the item's accept command carries back."""
        text = await self.complete(request)
        shown = self.shown.current(request.uri) if text else None
        return text, shown.id if shown is not None else None

    async def _completion(
        self, request: Request, inflight: Inflight, completer: CompleterLike | None
    ) -> tuple[CompletionLike | None, CompleterLike | None]:
        """The next suggestion computed ahead, else `completer`'s generation (once the
        loading model is ready, when there was none yet); None if no model came. With
        the completer that answers."""
        ahead = await self.ahead.served(request, inflight)
        if ahead is not None:
            return ahead, completer
        if completer is None and self.host.state == "loading":
            self.counts["waited_for_model"] += 1
            completer = await self.models.when_loaded(
                request.uri, inflight.cancel, self.ready_wait_s
            )
        if completer is None:
            return None, None
        number = self.counts["requests"]
        job = self.jobs.completion(
            completer, request, self.settings, inflight.cancel, number=number
        )
        return await asyncio.wrap_future(self.host.submit(job, inflight.cancel)), completer

    def _finish(
        self,
        request: Request,
        inflight: Inflight,
        completion: CompletionLike | None,
        completer: CompleterLike | None,
        latency_ms: float = 0.0,
    ) -> str:
        """The answer for a finished generation (by `completer`): dropped if stopped or
        stale, kept quiet if the filter says so (`quiet`), else shown."""
        reason = dropped_because(self.documents.get(request.uri), request, inflight, completion)
        if reason is not None:
            return self._answer_empty(reason)
        assert completion is not None
        previous = self.shown.current(request.uri)
        self.recording.replaced(previous.id if previous is not None else None)
        quiet = self.quiet.decide(request, completion, self.settings.quietness)
        text = completion.text if quiet is None or quiet.show else ""
        id = self.quiet.record(request, completion, completer, latency_ms, quiet)
        self.shown.remember(request.uri, request.text, request.offset, text, id)
        if not text:
            why = EMPTY_FOR_STOP.get(completion.stop_reason, "empty_generation")
            return self._answer_empty("quiet" if completion.text else why)
        self.counts["shown"] += 1
        self.ahead.predict(request, completion.text, completer, self.settings)
        return completion.text

    # -- feedback and status ------------------------------------------------------------------

    def accepted(self, kind: object = None, id: object = None, part: object = "full") -> None:
        """Count an accepted completion (`kind`: "inline" or "completion") and log it under
        its feedback `id` (`part`: "full", "word" or "line"); never sent anywhere. Only the
        first acceptance of a suggestion shown counts (`AcceptLedger`)."""
        if self.accepts.accept(id):
            self.quiet.accepted(id)
            self.counts["accepted"] += 1
            if kind in ("inline", "completion"):
                self.counts[f"accepted_{kind}"] += 1
        self.recording.accepted(id, part)

    def dismissed(self, id: object, reason: object = None) -> None:
        """The editor says the user hid suggestion `id` untaken (`reason`: how, its words)."""
        self.recording.dismissed(id, reason)

    def status(self) -> dict[str, Any]:
        """What `codetailor.status` answers; all of it stays on this machine."""
        return self.host.status() | {
            "version": __version__,
            "settings": self.settings.to_wire(),
            **self.models.status(),
            **counts_status(self.counts, self.empty),
            "documents": len(self.documents),
            "shownCompletions": len(self.shown),
            "typingThroughHits": self.shown.hits,
            "ahead": dict(self.ahead.counts),
            "context": self.workspace.status(),
            "lastGeneration": self.jobs.last_generation,
            "generating": self.jobs.generating,
            "feedback": self.recording.status(),
            "nextEdit": self.next_edits.status(),
            "quiet": self.quiet.status(),
        }
