"""One editor's session: the completion policy, in plain values.

`Session` holds what a connected client shares with the server (settings, open
documents, the completions shown, the workspace, in-flight requests, counts)
and decides every answer: typing-through, supersede and cancel, the
stale-answer check, empty answers by reason, acceptances and the status. The
work done ahead of requests is its `Ahead` (ahead.py), the jobs the model runs
its `Jobs` (jobs.py). The LSP layer (`lsp_server.lsp.handlers`) only
translates LSP params into these calls and the answers back. Pure: no pygls,
no torch; the model is reached through `HostLike` (lsp_server.session.ports),
so tests script it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from lsp_server import __version__
from lsp_server.completion.scope import completion_helps
from lsp_server.session.adapter_choice import (
    AdapterChoice,
    FolderAdapters,
    Registered,
    choose_adapter,
)
from lsp_server.session.ahead import Ahead, WarmPlan, edit_cursor
from lsp_server.session.documents import (
    Change,
    Documents,
    looks_binary,
    offset_at,
    prompt_safe,
    uri_to_path,
)
from lsp_server.session.edit_history import HeadText
from lsp_server.session.folders import WorkspaceFolders
from lsp_server.session.jobs import Inflight, Jobs, Request
from lsp_server.session.next_edits import NextEdits
from lsp_server.session.ports import (
    CompleterLike,
    CompletionLike,
    HostLike,
    NoRecording,
    RecordingLike,
    ShownAnswer,
)
from lsp_server.session.settings import Settings, parse_settings, unknown_keys
from lsp_server.session.typing_through import ShownCompletions
from lsp_server.session.workspace import WorkspaceContext

log = logging.getLogger("codetailor.session")

# Why a request was answered with nothing; `codetailor.status` counts each one, once,
# under its reason (`emptyAnswers`).
EMPTY_REASONS = (
    "unknown_document",  # the document is not open
    "disabled",  # the `enable` setting is off
    "binary",  # the document looks binary
    "not_ready",  # no model loaded, or still loading after READY_WAIT_S
    "no_help",  # too much text right of the cursor on its line for a completion to help
    "superseded",  # a newer request for the same document took over
    "stale",  # the document changed while the model ran
    "closed",  # the document was closed while the model ran
    "settings",  # new settings (another model, or disabled) stopped it
    "disconnected",  # the client went away
    "cancelled",  # $/cancelRequest (answered with an error, not an empty list)
    "failed",  # the generation raised
    "time_budget",  # `timeBudgetMs` ran out before the model produced anything
    "empty_generation",  # the model ran and had nothing to offer
)
# The reasons an answer the model was asked for is dropped rather than shown; the
# status' `counts.dropped` is their sum.
DROPPED_REASONS = ("superseded", "stale", "closed", "settings", "disconnected")

# How long a request made while the model loads waits for it, and how often it looks.
READY_WAIT_S = 300.0
READY_POLL_S = 0.05
# How often a request (or a status call) looks whether the adapter registry changed.
ADAPTER_POLL_S = 2.0


@dataclass(frozen=True)
class AdapterSource:
    """The adapter registry as the session sees it: what it holds for a workspace root
    and a base model (a `model` setting), and a cheap marker that changes when it
    changes (see lsp_server.model.registry)."""

    lookup: Callable[[str, str | None], Registered | None]
    stamp: Callable[[], object]


class Session:
    """Settings, documents and the completion path for one client at a time."""

    def __init__(
        self,
        startup: Settings,
        host: HostLike,
        *,
        workspace: WorkspaceContext | None = None,
        shown_capacity: int = 16,
        host_settings: Settings | None = None,
        model_allowed: Callable[[str], bool] | None = None,
        ready_wait_s: float = READY_WAIT_S,
        recording: RecordingLike | None = None,
        adapters: AdapterSource | None = None,
        head_text: HeadText | None = None,
    ) -> None:
        """`recording` keeps the feedback log (`lsp_server.feedback.Recording`); None: no log.
        `head_text` reads a file at git HEAD (`lsp_server.repo.head`), for next edits."""
        self.startup = startup  # the command line's settings: what a null setting returns to
        self.settings = startup
        self.host = host
        # What the host was last asked to load (by an earlier client, say): a client whose
        # settings differ from it reloads. None: the startup settings.
        # (with `adapter` resolved, as the host is always asked: see `choose_adapter`)
        self.adapter_choice = choose_adapter(startup.adapter, None, None)
        asked = host_settings or startup
        self.host_settings = dataclasses.replace(
            asked, adapter=choose_adapter(asked.adapter, None, None).adapter
        )
        self.host_adapters: tuple[str | None, ...] = (self.host_settings.adapter,)
        # Which model specs a client may set (None: any); the command line's is always allowed.
        self.model_allowed = model_allowed
        self.documents = Documents()
        self.shown = ShownCompletions(shown_capacity)
        self.workspace = workspace or WorkspaceContext()
        self.folders: WorkspaceFolders = self.workspace.workspace  # root and folders: the one copy
        self.inflight: dict[str, Inflight] = {}
        self.counts: Counter[str] = Counter()  # requests, shown, accepted...
        self.empty: Counter[str] = Counter()  # the empty answers, by reason
        self.ready_wait_s = ready_wait_s
        self.jobs = Jobs(self.documents, self.workspace)
        self.ahead = Ahead(host, self.documents, self.jobs)
        # The local feedback log of the workspace's repository (see lsp_server.feedback).
        self.recording: RecordingLike = recording if recording is not None else NoRecording()
        # `adapter: auto`: the registry, the workspace it is asked about, what it chose.
        self.adapters = adapters
        self.folder_adapters = FolderAdapters(self.folders)  # every workspace folder's adapter
        self._adapter_stamp: object = None
        self._adapter_checked = 0.0
        # Per document, the completer whose answers `shown` holds.
        self._answering: dict[str, CompleterLike | None] = {}
        self.next_edits = NextEdits(self, head_text)  # next-edit suggestions, their history

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

        `client` is its name (LSP clientInfo), which labels its feedback events.
        `root_uri` is the workspace served (the first folder: its context and feedback
        log); each of the `folders` (all workspace folders) is answered by its own
        adapter, documents outside them by the first folder's.
        """
        self.documents.encoding = encoding
        self.folders.open(root_uri, folders)
        problems = self.configure(options, base=self.startup)
        self.workspace.index_root(scan=self.settings.context)
        self.recording.start(self.workspace.root, self.settings.feedback, client)
        return problems

    def configure(self, raw: Any, *, base: Settings | None = None) -> list[str]:
        """Apply settings as a client sent them (on top of `base`, default the current ones).

        Returns one line per invalid value (the previous value is kept for it).
        """
        base = base or self.settings
        settings, problems = parse_settings(raw, base, self.startup)
        if not self._may_load(settings.model):
            problems.append(
                f"setting 'model': {settings.model!r} is a Hugging Face hub id, which this "
                "server only loads when started with --allow-client-models (or --model); "
                f"using {base.model!r}"
            )
            settings = dataclasses.replace(settings, model=base.model)
        if not self._may_use_engine(settings.engine):
            problems.append(
                f"setting 'engine': {settings.engine!r} is a remote engine this server was not "
                "started with (--engine), and clients may only choose one when it was started "
                f"with --allow-client-models; using {base.engine!r}"
            )
            settings = dataclasses.replace(settings, engine=base.engine)
        if ignored := unknown_keys(raw):
            log.info("ignoring unknown settings: %s", ", ".join(map(str, ignored)))
        self.apply_settings(settings)
        return problems

    def _may_load(self, model: str | None) -> bool:
        """Whether a client may set `model` (the command line's own is always allowed)."""
        if model is None or model == self.startup.model or self.model_allowed is None:
            return True
        return self.model_allowed(model)

    def _may_use_engine(self, engine: str) -> bool:
        """Whether a client may set `engine`: the local one and the command line's always;
        another URL (where the server would send prompts and its API key) only where
        clients may choose models at all (`model_allowed` is None)."""
        return engine in ("local", self.startup.engine) or self.model_allowed is None

    def apply_settings(self, settings: Settings) -> None:
        """Take new settings; a different model (or prompt format) loads in the background.

        The host is asked for the settings with `adapter` resolved to the first folder's
        (see `choose_adapter`), and for the adapters every folder uses; when only those
        change under a ready model, the host swaps them in while it keeps answering.
        """
        previous, self.settings = self.host_settings, settings
        self.recording.set_enabled(settings.feedback)
        self.adapter_choice = self._choose_adapter(settings)
        resolved = dataclasses.replace(settings, adapter=self.adapter_choice.adapter)
        adapters = self.folder_adapters.in_use(self.adapter_choice)
        key = (resolved.model_key, resolved.prompt_format, adapters)
        before = (previous.model_key, previous.prompt_format, self.host_adapters)
        if (
            self.host.state == "ready"
            and key != before
            and only_adapter_differs(resolved, previous)
        ):
            self.host_settings, self.host_adapters = resolved, adapters
            self.host.swap(resolved, adapters)
        elif self.host.state == "idle" or key != before:
            self.host_settings, self.host_adapters = resolved, adapters
            self.cancel_all("settings")
            self.shown = ShownCompletions(self.shown.capacity)
            self.host.load(resolved, adapters)
        if not settings.enable:
            self.cancel_all("settings")

    def _forget_answers(self, uri: str) -> None:
        """Drop what the previous model or adapter suggested in `uri` (shown completion,
        next suggestion), so typing-through never serves it once another one answers."""
        self.shown.forget(uri)
        self.ahead.forget_prediction(uri)

    def _choose_adapter(self, settings: Settings) -> AdapterChoice:
        """Every folder's adapter under `settings`; returns the first folder's (the default)."""
        adapters = self.adapters
        if adapters is not None:
            self._adapter_stamp = adapters.stamp()
            self._adapter_checked = time.monotonic()

        def lookup(folder: str) -> Registered | None:
            return adapters.lookup(folder, settings.model) if adapters is not None else None

        return self.folder_adapters.choose(settings.adapter, lookup, self.startup.adapter)

    def change_folders(self, added: Iterable[str], removed: Iterable[str]) -> None:
        """Workspace folders were added or removed (URIs): choose their adapters again; the
        host loads new ones in the background while the current ones keep answering."""
        self.folders.change(added, removed)
        self.apply_settings(self.settings)

    def _completer(self, uri: str) -> CompleterLike | None:
        """The completer of the adapter that answers `uri` (its workspace folder's)."""
        return self.host.completer_for(self.adapter_of(uri))

    def adapter_of(self, uri: str) -> str | None:
        """The adapter that answers `uri` (its workspace folder's)."""
        return self.folder_adapters.adapter_for(uri_to_path(uri), self.adapter_choice)

    def check_adapters(self, *, now: float | None = None) -> bool:
        """Look (at most twice per ADAPTER_POLL_S) whether the registry changed; if it did,
        choose again, and swap when another adapter now answers. True when it looked."""
        if self.adapters is None or not self.folder_adapters.folders:
            return False
        now = time.monotonic() if now is None else now
        if now - self._adapter_checked < ADAPTER_POLL_S / 2:
            return False
        self._adapter_checked = now
        if self.adapters.stamp() != self._adapter_stamp:
            self.apply_settings(self.settings)
        return True

    def disconnect(self) -> None:
        """The client has gone: stop its generations and its workspace scan.

        A session is made per connection and dropped with it; the scan is only
        told to stop (`ContextIndex.stop` never joins it), so a scan stuck in a
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
        self.ahead.warm(uri, len(text), self._completer(uri), self.settings)

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
            self.ahead.warm(uri, cursor[0], self._completer(uri), self.settings)

    def cursor(self, uri: str, line: int, character: int) -> None:
        """The editor's cursor is at (line, character): warm the window there if it is new."""
        self.ahead.counts["cursors"] += 1
        doc = self.documents.get(uri)
        if doc is None or self.host.completer is None:
            return  # nothing to warm with yet: the plan keeps only windows it prepared
        if self.ahead.plan.moved(uri, line, 0):
            offset = offset_at(doc.text, line, character, self.encoding)
            self.ahead.warm(uri, offset, self._completer(uri), self.settings)

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
        answering = self._completer(request.uri)
        if answering is not self._answering.get(request.uri):  # another model or adapter
            self._answering[request.uri] = answering
            self._forget_answers(request.uri)
        answer = self._answer_at_once(request)
        if answer is not None:
            return answer
        inflight = self._take_over(request)
        try:
            completion = await self._completion(request, inflight)
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
        return self._finish(request, inflight, completion, latency_ms)

    def _take_over(self, request: Request) -> Inflight:
        """Make `request` the one running for its document: it supersedes the running one,
        and prefills its window itself, continuing the warm there (which stops)."""
        self.ahead.plan.asked(request.uri, request.text.count("\n", 0, request.offset))
        self.ahead.stop_warm(request.uri)
        self.cancel(request.uri, "superseded")
        inflight = self.inflight[request.uri] = Inflight()
        return inflight

    async def suggest(self, request: Request) -> tuple[str, str | None]:
        """`complete`, and the feedback id of the suggestion answered (None: not recorded)."""
        text = await self.complete(request)
        shown = self.shown.current(request.uri) if text else None
        return text, shown.id if shown is not None else None

    async def _completion(self, request: Request, inflight: Inflight) -> CompletionLike | None:
        """The next suggestion computed ahead, else a generation; None if no model came."""
        ahead = await self.ahead.served(request, inflight)
        if ahead is not None:
            return ahead
        completer = self._completer(request.uri)
        if completer is None and await self._wait_for_model(inflight):
            completer = self._completer(request.uri)
        if completer is None:
            return None
        number = self.counts["requests"]
        job = self.jobs.completion(
            completer, request, self.settings, inflight.cancel, number=number
        )
        return await asyncio.wrap_future(self.host.submit(job))

    async def _wait_for_model(self, inflight: Inflight) -> bool:
        """Wait for the loading model; False if it fails, takes too long, or the request
        is stopped (superseded, the document edited) meanwhile."""
        if self.host.state != "loading":
            return False
        self.counts["waited_for_model"] += 1
        deadline = time.monotonic() + self.ready_wait_s
        while self.host.completer is None:
            if self.host.state != "loading" or inflight.cancel.is_set():
                return False
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(READY_POLL_S)
        return True

    def _finish(
        self,
        request: Request,
        inflight: Inflight,
        completion: CompletionLike | None,
        latency_ms: float = 0.0,
    ) -> str:
        """The answer for a finished generation: dropped if stopped or stale, else shown."""
        reason = self._dropped_because(request, inflight, completion)
        if reason is not None:
            return self._answer_empty(reason)
        assert completion is not None
        previous = self.shown.current(request.uri)
        self.recording.replaced(previous.id if previous is not None else None)
        id = self._record_shown(request, completion, latency_ms) if completion.text else None
        self.shown.remember(request.uri, request.text, request.offset, completion.text, id)
        if not completion.text:
            ran_out = completion.as_dict().get("stop_reason") == "time"
            return self._answer_empty("time_budget" if ran_out else "empty_generation")
        self.counts["shown"] += 1
        self.ahead.predict(request, completion.text, self._completer(request.uri), self.settings)
        return completion.text

    def _dropped_because(
        self, request: Request, inflight: Inflight, completion: CompletionLike | None
    ) -> str | None:
        """Why a finished generation's answer is not shown (one of DROPPED_REASONS): it
        was stopped, or its document closed or changed meanwhile; None: it is shown."""
        doc = self.documents.get(request.uri)
        if completion is None or inflight.cancel.is_set():
            return inflight.reason or "superseded"
        if doc is None:
            return "closed"
        if doc.revision != request.revision:
            return "stale"
        return None

    def _record_shown(
        self, request: Request, completion: CompletionLike, latency_ms: float
    ) -> str | None:
        """Log a shown answer (off the event loop); its id, None when nothing is recorded."""
        completer = self._completer(request.uri)
        if completer is None or not self.workspace.in_workspace(request.uri):
            return None
        answer = ShownAnswer(
            uri=request.uri,
            path=self.workspace.path_of(request.uri),
            language=request.language_id,
            text=prompt_safe(request.text),
            offset=request.offset,
            completion=completion,
            completer=completer,
            latency_ms=latency_ms,
            describe=self.host.status,
        )
        return self.recording.shown(answer)

    # -- feedback and status ------------------------------------------------------------------

    def accepted(self, kind: object = None, id: object = None, part: object = "full") -> None:
        """Count an accepted completion (`kind`: "inline" or "completion") and log it under
        its feedback `id` (`part`: "full", "word" or "line"); never sent anywhere."""
        self.counts["accepted"] += 1
        if kind in ("inline", "completion"):
            self.counts[f"accepted_{kind}"] += 1
        self.recording.accepted(id, part)

    def dismissed(self, id: object, reason: object = None) -> None:
        """The editor says the user hid suggestion `id` untaken (`reason`: how, its words)."""
        self.recording.dismissed(id, reason)

    def acceptance_rate(self) -> float | None:
        shown, accepted = self.counts["shown"], self.counts["accepted"]
        return round(accepted / shown, 3) if shown else None

    def _counts_status(self) -> dict[str, int]:
        """The status' `counts`: requests, answers shown, typed through and accepted, and
        `dropped`, the answers the model was asked for and that were not shown (each also
        an empty answer, under its reason)."""
        return dict(self.counts) | {"dropped": sum(self.empty[r] for r in DROPPED_REASONS)}

    def status(self) -> dict[str, Any]:
        """What `codetailor.status` answers; all of it stays on this machine."""
        return self.host.status() | {
            "version": __version__,
            "settings": self.settings.to_wire(),
            "adapterChoice": self.adapter_choice.as_dict(),
            "workspaceAdapters": self.folder_adapters.rows(
                self.host.answers_for, self.adapter_choice
            ),
            "counts": self._counts_status(),
            "acceptanceRate": self.acceptance_rate(),
            "emptyAnswers": {reason: self.empty[reason] for reason in EMPTY_REASONS},
            "documents": len(self.documents),
            "shownCompletions": len(self.shown),
            "typingThroughHits": self.shown.hits,
            "ahead": dict(self.ahead.counts),
            "context": self.workspace.status(),
            "lastGeneration": self.jobs.last_generation,
            "generating": self.jobs.generating,
            "feedback": self.recording.status(),
            "nextEdit": self.next_edits.status(),
        }


def only_adapter_differs(a: Settings, b: Settings) -> bool:
    """Whether `a` and `b` load the same base model, with the same format, on the same engine."""
    return (a.model, a.device, a.dtype, a.engine, a.prompt_format) == (
        b.model,
        b.device,
        b.dtype,
        b.engine,
        b.prompt_format,
    )
