"""Which adapter answers a workspace, and why: the `adapter` setting's decision.

`adapter` is `auto` (the default: the adapter registered for the workspace's
repository, else the base model), `none` (the base model), or an adapter
folder or registered name (that one). The registry itself lives in the model
layer; the session hands in what it found for the workspace as a
`Registered`, so this stays pure: no pygls, no torch, no file access.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

from lsp_server.session.folders import WorkspaceFolders

AUTO = "auto"
NONE = "none"


@dataclass(frozen=True)
class Registered:
    """What the registry holds for a workspace: the adapter folder and how it matched."""

    name: str
    path: str
    how: str  # "by path" (the repository's root) or "by remote" (a clone of the same remote)
    # Why it does not fit the base model served (trained for another), when it does not:
    # the registry found no adapter for this repository and this base model.
    refused: str | None = None


@dataclass(frozen=True)
class AdapterChoice:
    """The adapter to load (a folder or a registered name; None: the base model) and why."""

    adapter: str | None
    reason: str
    name: str | None = None  # the registered name, when the registry chose it

    def as_dict(self) -> dict[str, Any]:
        return {"adapter": self.adapter, "name": self.name, "reason": self.reason}


def is_auto(setting: str | None) -> bool:
    return (setting or "").strip().lower() == AUTO


def choose_adapter(
    setting: str | None,
    root: str | None,
    registered: Registered | None,
    *,
    command_line: str | None = AUTO,
) -> AdapterChoice:
    """The adapter for the workspace at `root` under the `adapter` setting.

    `registered` is what the registry holds for `root` and the base model served (only
    read for `auto`; one trained for another base model is never chosen);
    `command_line` is the server's own `--adapter`, to say who set a fixed one.
    """
    text = (setting or "").strip()
    if not text or text.lower() == NONE:
        return AdapterChoice(None, "adapter set to none: base model")
    if text.lower() != AUTO:
        who = "--adapter" if text == command_line else "the adapter setting"
        return AdapterChoice(text, f"set by {who}")
    if root is None:
        return AdapterChoice(None, "no workspace folder: base model")
    if registered is None:
        return AdapterChoice(None, "none registered: base model")
    if registered.refused:
        return AdapterChoice(
            None,
            f"{registered.name} is registered for {root} ({registered.how}) but was "
            f"{registered.refused}: base model",
        )
    return AdapterChoice(
        registered.path, f"registered for {root} ({registered.how})", registered.name
    )


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
    ) -> AdapterChoice:
        """Choose for every folder (`lookup`: what the registry holds for a folder, only
        called for `auto`); returns the default choice."""
        auto = is_auto(setting)
        self.choices = {
            folder: choose_adapter(
                setting, folder, lookup(folder) if auto else None, command_line=command_line
            )
            for folder in self.folders
        }
        return self.default(setting, command_line)

    def default(self, setting: str | None, command_line: str | None = AUTO) -> AdapterChoice:
        if self.folders:
            return self.choices[self.folders[0]]
        return choose_adapter(setting, None, None, command_line=command_line)

    def in_use(self, default: AdapterChoice) -> tuple[str | None, ...]:
        """The adapters the folders use, the default first, each once (None: the base)."""
        chosen = [default.adapter, *(c.adapter for c in self.choices.values())]
        return tuple(dict.fromkeys(chosen))

    def folder_of(self, path: str | None) -> str | None:
        """The innermost workspace folder holding `path`, or None."""
        if not path:
            return None
        inside = [f for f in self.folders if PurePath(path).is_relative_to(f)]
        return max(inside, key=len) if inside else None

    def adapter_for(self, path: str | None, default: AdapterChoice) -> str | None:
        """The adapter that answers the document at `path`."""
        folder = self.folder_of(path)
        return self.choices[folder].adapter if folder in self.choices else default.adapter

    def rows(
        self, answers_for: Callable[[str | None], tuple[str | None, str]], default: AdapterChoice
    ) -> list[dict[str, Any]]:
        """The status' `workspaceAdapters`: per folder, its choice, who answers and why;
        and a last row for documents outside every folder."""
        rows = []
        for folder in self.folders:
            choice = self.choices[folder]
            answering, why = answers_for(choice.adapter)
            rows.append(
                choice.as_dict() | {"root": folder, "answeredBy": answering, "answeredWhy": why}
            )
        answering, why = answers_for(default.adapter)
        rows.append(
            {"root": None, "adapter": default.adapter, "reason": OUTSIDE_REASON}
            | {"answeredBy": answering, "answeredWhy": why}
        )
        return rows
