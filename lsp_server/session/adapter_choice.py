"""Which adapter answers a workspace, and why: the `adapter` setting's decision.

`adapter` is `auto` (the default: the adapter registered for the workspace's
repository, else the base model), `none` (the base model), or an adapter
folder or registered name (that one, resolved to its folder by `resolve`).
The registry itself lives in the model layer; the session hands in what it
found for the workspace as a `Registered` (lsp_server.spec), and the
function that resolves a name, so this stays pure: no pygls, no torch, no
file access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from lsp_server.session.folders import WorkspaceFolders
from lsp_server.spec import (
    AUTO,
    GENERAL_REASON,
    AdapterRef,
    Adapters,
    Registered,
    fixed_adapter,
    folder,
    is_auto,
)

__all__ = [
    "GENERAL_REASON",
    "AdapterChoice",
    "FolderAdapters",
    "Registered",
    "Resolve",
    "choose_adapter",
]

Resolve = Callable[[str], AdapterRef]  # a folder or registered name -> the adapter it names


@dataclass(frozen=True)
class AdapterChoice:
    """The adapter to load (None: the base model) and why."""

    ref: AdapterRef | None
    reason: str

    @property
    def adapter(self) -> str | None:
        """The adapter's folder; None: the base model."""
        return folder(self.ref)

    @property
    def name(self) -> str | None:
        """Its registered name, when it has one."""
        return self.ref.name if self.ref is not None else None

    def as_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "name": self.name, "reason": self.reason}


def choose_adapter(
    setting: str | None,
    root: str | None,
    registered: Registered | None,
    *,
    command_line: str | None = AUTO,
    resolve: Resolve = AdapterRef,
    general: AdapterRef | None = None,
) -> AdapterChoice:
    """The adapter for the workspace at `root` under the `adapter` setting.

    `registered` is what the registry holds for `root` and the base model served (only
    read for `auto`; one trained for another base model is never chosen);
    `command_line` is the server's own `--adapter`, to say who set a fixed one;
    `resolve` turns a fixed setting (a folder or a registered name) into its folder;
    `general` is the adapter shipped for the base model served (lsp_server.model.shipped),
    which `auto` falls back on where the repository has none of its own.
    """
    text = fixed_adapter(setting)
    if text is not None:
        who = "--adapter" if text == command_line else "the adapter setting"
        return AdapterChoice(resolve(text), f"set by {who}")
    if not is_auto(setting):
        return AdapterChoice(None, "adapter set to none: base model")
    if root is None:
        return _fallback(general, "no workspace folder")
    if registered is None:
        return _fallback(general, "none registered")
    if registered.refused:
        why = f"{registered.name} is registered for {root} ({registered.how}) but was "
        return _fallback(general, why + registered.refused)
    return AdapterChoice(registered.ref, f"registered for {root} ({registered.how})")


def _fallback(general: AdapterRef | None, why: str) -> AdapterChoice:
    """`auto` without a repository's own adapter: the shipped general one, else the base."""
    if general is None:
        return AdapterChoice(None, f"{why}: base model")
    return AdapterChoice(general, f"{why}: {GENERAL_REASON}")


# Documents outside every workspace folder are answered by the first folder's adapter:
# such files are mostly ones the project opened (a dependency's source, a scratch file),
# and a single-folder workspace then keeps one adapter in use, merged (the fast path).
OUTSIDE_REASON = "outside every workspace folder: the first folder's adapter answers"


@dataclass
class FolderAdapters:
    """Each workspace folder's adapter choice; the first folder's is the default one
    (it answers documents outside every folder, and is the one the host loads first).
    The folders are the workspace's (`WorkspaceFolders`, shared with the session)."""

    workspace: WorkspaceFolders = field(default_factory=WorkspaceFolders)
    choices: dict[str, AdapterChoice] = field(default_factory=dict)

    @property
    def folders(self) -> list[str]:
        return self.workspace.folders

    def choose(
        self,
        setting: str | None,
        lookup: Callable[[str], Registered | None],
        command_line: str | None = AUTO,
        resolve: Resolve = AdapterRef,
        general: AdapterRef | None = None,
    ) -> AdapterChoice:
        """Choose for every folder (`lookup`: what the registry holds for a folder, only
        called for `auto`; `resolve`, `general`: see `choose_adapter`); returns the
        default choice."""
        auto = is_auto(setting)

        def choose(root: str | None) -> AdapterChoice:
            registered = lookup(root) if auto and root is not None else None
            return choose_adapter(
                setting,
                root,
                registered,
                command_line=command_line,
                resolve=resolve,
                general=general,
            )

        self.choices = {root: choose(root) for root in self.folders}
        return self.choices[self.folders[0]] if self.folders else choose(None)

    def in_use(self, default: AdapterChoice) -> Adapters:
        """The adapters the folders use, the default first, each once (None: the base)."""
        chosen = [default.ref, *(c.ref for c in self.choices.values())]
        return tuple(dict.fromkeys(chosen))

    def folder_of(self, path: str | None) -> str | None:
        """The innermost workspace folder holding `path`, or None."""
        if not path:
            return None
        inside = [f for f in self.folders if PurePath(path).is_relative_to(f)]
        return max(inside, key=len) if inside else None

    def adapter_for(self, path: str | None, default: AdapterChoice) -> AdapterRef | None:
        """The adapter that answers the document at `path`."""
        root = self.folder_of(path)
        return self.choices[root].ref if root in self.choices else default.ref

    def rows(
        self,
        answers_for: Callable[[AdapterRef | None], tuple[AdapterRef | None, str]],
        default: AdapterChoice,
    ) -> list[dict[str, Any]]:
        """The status' `workspaceAdapters`: per folder, its choice, who answers and why;
        and a last row for documents outside every folder."""

        def answered(choice: AdapterChoice) -> dict[str, Any]:
            answering, why = answers_for(choice.ref)
            return {"answeredBy": folder(answering), "answeredWhy": why}

        rows = [
            self.choices[root].as_dict() | {"root": root} | answered(self.choices[root])
            for root in self.folders
        ]
        outside = {"root": None, "adapter": default.adapter, "reason": OUTSIDE_REASON}
        return [*rows, outside | answered(default)]
