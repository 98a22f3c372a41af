"""Which adapter answers a workspace, and why: the `adapter` setting's decision.

`adapter` is `auto` (the default: the adapter registered for the workspace's
repository, else the base model), `none` (the base model), or an adapter
folder or registered name (that one). The registry itself lives in the model
layer; the session hands in what it found for the workspace as a
`Registered`, so this stays pure: no pygls, no torch, no file access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

AUTO = "auto"
NONE = "none"


@dataclass(frozen=True)
class Registered:
    """What the registry holds for a workspace: the adapter folder and how it matched."""

    name: str
    path: str
    how: str  # "by path" (the repository's root) or "by remote" (a clone of the same remote)


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

    `registered` is what the registry holds for `root` (only read for `auto`);
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
    return AdapterChoice(
        registered.path, f"registered for {root} ({registered.how})", registered.name
    )
