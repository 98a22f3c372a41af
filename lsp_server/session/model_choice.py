"""Which model and adapters the host holds for a session, and which completer answers.

`ModelChoice` is the session's one owner of that question. From the settings
(after checking what a client may choose: `permit`) and every workspace
folder's adapter choice (adapter_choice.py) it makes the `Holding` the host
must hold (lsp_server.spec) and tells the host to load it, or to swap the
adapters in behind a ready model when only they changed (`apply`). It watches
the adapter registry for new registrations (`registry_changed`), and answers
"which completer for this document" (`completer`; `when_loaded` while the model
loads). Pure: the registry is
reached through `AdapterSource`, the host through `HostLike`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from lsp_server.session.adapter_choice import AdapterChoice, FolderAdapters, Resolve
from lsp_server.session.documents import uri_to_path
from lsp_server.session.folders import WorkspaceFolders
from lsp_server.session.ports import CompleterLike, HostLike
from lsp_server.session.settings import Settings, parse_engine
from lsp_server.spec import AdapterRef, Holding, ModelSpec, Registered

# How often a request (or a status call) looks whether the adapter registry changed.
ADAPTER_POLL_S = 2.0
# How long a request made while the model loads waits for it, and how often it looks.
READY_WAIT_S = 300.0
READY_POLL_S = 0.05


@dataclass(frozen=True)
class AdapterSource:
    """The adapter registry as the session sees it: what it holds for a workspace root
    and a base model (a `model` setting), a cheap marker that changes when it changes,
    and the adapter a folder or registered name stands for (see
    lsp_server.model.registry)."""

    lookup: Callable[[str, str | None], Registered | None]
    stamp: Callable[[], object]
    resolve: Resolve = AdapterRef
    # Whether an adapter learned next edits in the named layout (its metadata says so);
    # a source that cannot tell takes every adapter's word for it.
    learned: Callable[[AdapterRef, str | None], bool] = lambda adapter, layout: True
    # The general adapter shipped for a base model (a `model` setting), which `auto` falls
    # back on where a repository has none of its own (lsp_server.model.shipped).
    general: Callable[[str | None], AdapterRef | None] = lambda model: None


def model_spec(settings: Settings, loading: ModelSpec | None = None) -> ModelSpec:
    """The model spec `settings` ask for: what a change of means loading again. `loading`
    gives the fields no setting changes (trust_remote_code, compile)."""
    return dataclasses.replace(
        loading or ModelSpec(),
        model=settings.model,
        device=settings.device,
        dtype=settings.dtype,
        engine=parse_engine(settings.engine),  # a parsed setting: valid
        prompt_format=settings.prompt_format,
    )


class ModelChoice:
    """The model, the adapters and the permissions of one session."""

    def __init__(
        self,
        host: HostLike,
        startup: Settings,
        *,
        workspace: WorkspaceFolders | None = None,
        loading: ModelSpec | None = None,
        model_allowed: Callable[[str], bool] | None = None,
        engines_allowed: bool = True,
        source: AdapterSource | None = None,
    ) -> None:
        """`startup`: the command line's settings (always allowed); `loading`: how this
        server loads models (the spec's fields no setting changes: trust_remote_code,
        compile); `model_allowed`: which model specs a client may set (None: any);
        `engines_allowed`: whether a client may point the server at a remote engine other
        than the command line's (its own permission: the API key goes there);
        `workspace`: the session's folders, each answered by its own adapter."""
        self.host = host
        self.startup = startup
        self.loading = loading or ModelSpec()
        self.model_allowed = model_allowed
        self.engines_allowed = engines_allowed
        self.source = source
        # Every workspace folder's adapter, over the session's one copy of the folders.
        self.folders = FolderAdapters(workspace or WorkspaceFolders())
        resolve = source.resolve if source is not None else AdapterRef
        self.choice = self.folders.choose(
            startup.adapter, lambda root: None, startup.adapter, resolve, self._general(startup)
        )
        # What the host was last asked to hold (by an earlier client, say): a client whose
        # settings differ from it reloads. None from the host: the startup settings.
        self.asked = host.held or Holding(model_spec(startup, self.loading), (self.choice.ref,))
        self._stamp: object = None
        self._checked = 0.0
        self._learned: dict[tuple[AdapterRef, str | None], bool] = {}

    def permit(self, settings: Settings, base: Settings) -> tuple[Settings, list[str]]:
        """`settings` with what a client may not choose put back as in `base`, and one
        line for each value put back."""
        problems = []
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
                f"with --allow-client-engines; using {base.engine!r}"
            )
            settings = dataclasses.replace(settings, engine=base.engine)
        return settings, problems

    def _may_load(self, model: str | None) -> bool:
        """Whether a client may set `model` (the command line's own is always allowed)."""
        if model is None or model == self.startup.model or self.model_allowed is None:
            return True
        return self.model_allowed(model)

    def _may_use_engine(self, engine: str) -> bool:
        """Whether a client may set `engine`: the local one and the command line's always;
        another URL (where the server would send prompts and its API key) only where the
        server allows it by itself (`engines_allowed`), not with any model."""
        return engine in ("local", self.startup.engine) or self.engines_allowed

    def apply(self, settings: Settings) -> Literal["load", "swap"] | None:
        """Choose every folder's adapter under `settings` and ask the host for what they
        need: "load" (another model, or nothing loaded yet), "swap" (only the adapters
        changed under a ready model: they load behind it) or nothing (None)."""
        self.choice = self._choose(settings)
        self._learned.clear()  # an adapter may have been retrained in place
        wanted = Holding(model_spec(settings, self.loading), self._in_use(settings))
        change = self.asked.change_to(wanted)
        if change == "swap" and self.host.state != "ready":
            change = "load"
        if change is None and self.host.state == "idle":
            change = "load"
        if change is not None:
            self.asked = wanted
            ask = self.host.swap if change == "swap" else self.host.load
            ask(wanted.spec, wanted.adapters)
        return change

    def _in_use(self, settings: Settings) -> tuple[AdapterRef | None, ...]:
        """The folders' adapters (the default first), and the base model after them where
        next edits are on and one of them did not learn next edits: the base answers those."""
        adapters = self.folders.in_use(self.choice)
        layout = settings.next_edit_format
        if not (settings.enable and settings.next_edit) or None in adapters:
            return adapters
        if all(self.learned_next_edits(a, layout) for a in adapters):
            return adapters
        return (*adapters, None)

    def learned_next_edits(self, adapter: AdapterRef | None, layout: str | None) -> bool:
        """Whether `adapter` learned next edits in `layout` (None: the base model, which
        answers them as it is)."""
        if adapter is None or self.source is None:
            return True
        key = (adapter, layout)
        if key not in self._learned:
            self._learned[key] = self.source.learned(adapter, layout)
        return self._learned[key]

    def next_edit_adapter_for(self, uri: str, layout: str | None) -> AdapterRef | None:
        """The adapter that answers next edits in `uri`: its folder's, if that adapter
        learned them in `layout`; else the base model (None)."""
        adapter = self.adapter_for(uri)
        return adapter if self.learned_next_edits(adapter, layout) else None

    def _choose(self, settings: Settings) -> AdapterChoice:
        """Every folder's adapter under `settings`; returns the first folder's (the default)."""
        source = self.source
        if source is None:
            return self.folders.choose(settings.adapter, lambda root: None, self.startup.adapter)
        self._stamp, self._checked = source.stamp(), time.monotonic()

        def lookup(root: str) -> Registered | None:
            return source.lookup(root, settings.model)

        return self.folders.choose(
            settings.adapter, lookup, self.startup.adapter, source.resolve, self._general(settings)
        )

    def _general(self, settings: Settings) -> AdapterRef | None:
        """The general adapter shipped for the model `settings` ask for, which `auto` falls
        back on; none for a remote engine (it serves the adapters it was given, by name)."""
        if self.source is None or parse_engine(settings.engine) is not None:
            return None
        return self.source.general(settings.model)

    def registry_changed(self, now: float | None = None) -> tuple[bool, bool]:
        """Whether it looked at the registry now (at most twice per ADAPTER_POLL_S, and only
        with workspace folders), and whether the registry changed since the last choice."""
        if self.source is None or not self.folders.folders:
            return False, False
        now = time.monotonic() if now is None else now
        if now - self._checked < ADAPTER_POLL_S / 2:
            return False, False
        self._checked = now
        return True, self.source.stamp() != self._stamp

    def adapter_for(self, uri: str) -> AdapterRef | None:
        """The adapter that answers `uri` (its workspace folder's)."""
        return self.folders.adapter_for(uri_to_path(uri), self.choice)

    def completer(self, uri: str) -> CompleterLike | None:
        """The completer of the adapter that answers `uri`; None while nothing is loaded."""
        return self.host.completer_for(self.adapter_for(uri))

    async def when_loaded(
        self, uri: str, cancel: threading.Event, wait_s: float = READY_WAIT_S
    ) -> CompleterLike | None:
        """The completer that answers `uri` once the loading model is ready; None if the
        load fails, takes over `wait_s` seconds, or `cancel` is set (the request was
        superseded, the document edited) meanwhile."""
        deadline = time.monotonic() + wait_s
        while self.host.completer is None:
            if self.host.state != "loading" or cancel.is_set():
                return None
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(READY_POLL_S)
        return self.completer(uri)

    def status(self) -> dict[str, Any]:
        """The status' `adapterChoice` and `workspaceAdapters`."""
        return {
            "adapterChoice": self.choice.as_dict(),
            "workspaceAdapters": self.folders.rows(self.host.answers_for, self.choice),
        }
