"""What the model host must hold, as plain values both sides of the port share.

`ModelSpec` is everything that decides which weights are loaded and how: a change
of it means loading again. `AdapterRef` names one LoRA adapter by its folder,
resolved once (from a registered name, by the adapter registry) before it
reaches the host. The host holds one spec and a tuple of adapters (the default
first; None is the bare base model): when only the adapters change, it swaps
them onto the resident base model instead of reloading (`Holding.change_to`).

`Registered` is what the adapter registry holds for a workspace, as the
session's `adapter: auto` reads it. The `adapter` setting's words (`auto`,
`none`) are read here, once. Pure: no torch, no pygls, no file access.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

AUTO = "auto"
NONE = "none"
# Why `auto` chose the adapter shipped for the base model (lsp_server.model.shipped).
GENERAL_REASON = "the general adapter shipped for this base model"


@dataclass(frozen=True)
class ModelSpec:
    """The model to load and how; equal specs load the same weights the same way."""

    model: str | None = None  # a `--model` spec; None: the default model
    device: str = "auto"
    dtype: str = "auto"
    engine: str | None = None  # an OpenAI-compatible server's URL; None: the local engine
    prompt_format: str | None = None  # None: the adapter's recorded format, else the model's
    trust_remote_code: bool = False
    compile: str = "off"  # `serve --compile`: auto, on or off (local decode steps)


@dataclass(frozen=True)
class AdapterRef:
    """One adapter: its folder, and its registered name when it has one (what a remote
    engine is asked for in `model`). Where nothing resolved a name to a folder, `path`
    is the name as given, and loading it says why not."""

    path: str
    name: str | None = None

    def __str__(self) -> str:
        return self.path


Adapters = tuple["AdapterRef | None", ...]  # the default first; None: the base model


def folder(adapter: AdapterRef | None) -> str | None:
    """The adapter's folder, None for the base model (for status rows and logs)."""
    return adapter.path if adapter is not None else None


@dataclass(frozen=True)
class Holding:
    """What the host is asked to hold: one model, and the adapters in use on it."""

    spec: ModelSpec
    adapters: Adapters = (None,)

    @property
    def default(self) -> AdapterRef | None:
        """The adapter that answers when no other is asked for (the first folder's)."""
        return self.adapters[0] if self.adapters else None

    def change_to(self, wanted: Holding) -> Literal["load", "swap"] | None:
        """How the host gets from this to `wanted`: load again when the spec changes,
        swap when only the adapters do, nothing when nothing does."""
        if wanted == self:
            return None
        return "swap" if wanted.spec == self.spec else "load"


def is_auto(setting: str | None) -> bool:
    """Whether the `adapter` setting is `auto` (the workspace's registered adapter)."""
    return (setting or "").strip().lower() == AUTO


def fixed_adapter(setting: str | None) -> str | None:
    """The adapter the `adapter` setting names itself (a folder or a registered name);
    None for `auto`, `none` or nothing."""
    text = (setting or "").strip()
    return None if text.lower() in ("", AUTO, NONE) else text


@dataclass(frozen=True)
class Registered:
    """What the registry holds for a workspace: the adapter folder and how it matched."""

    name: str
    path: str
    how: str  # "by path" (the repository's root) or "by remote" (a clone of the same remote)
    # Why it does not fit the base model served (trained for another), when it does not:
    # the registry found no adapter for this repository and this base model.
    refused: str | None = None

    @property
    def ref(self) -> AdapterRef:
        return AdapterRef(self.path, self.name)
