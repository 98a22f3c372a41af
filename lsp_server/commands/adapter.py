"""The adapter a command uses (`complete`, `eval`), chosen as the server chooses one.

`--adapter` names a folder or a registered name, `none` the base model; `auto` (or
nothing) means the adapter registered for the repository holding the file or REPO, else
the general adapter shipped for the base model (lsp_server.model.shipped), else the base
model: the session's own rule (session/adapter_choice.py), fed from the registry here.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lsp_server.session.adapter_choice import AdapterChoice, choose_adapter
from lsp_server.session.settings import parse_engine
from lsp_server.spec import AUTO, is_auto

log = logging.getLogger("codetailor")


def adapter_choice(
    setting: str | None, model: str | None, engine: str, where: Path | None = None
) -> AdapterChoice:
    """The adapter a command uses, and why, as the server chooses one for a workspace:
    `--adapter` names a folder or a registered name, `none` the base model; `auto` (or
    nothing) the adapter registered for the repository holding `where` (when given), else
    the general adapter shipped for `model`, unless `engine` is a remote one."""
    from lsp_server.model import registry  # torch-free, but the registry reads git: lazily
    from lsp_server.model.shipped import shipped_adapter

    setting = setting or AUTO
    folder = where.expanduser().resolve() if where is not None else None
    root = str(folder.parent if folder.is_file() else folder) if folder is not None else None
    registered = registry.registered_for(root, model) if is_auto(setting) and root else None
    local = parse_engine(engine) is None
    choice = choose_adapter(
        setting,
        root,
        registered,
        command_line=setting,
        resolve=registry.resolve_adapter,
        general=shipped_adapter(model) if local else None,
    )
    log.info("adapter %s: %s", choice.adapter or "none", choice.reason)
    return choice
