"""An adapter's `codetailor.json`: defined, written and read here, and nowhere else.

`codetailor finetune` writes it beside the PEFT files; the server reads it when
it loads the adapter and checks two things against itself: the base model
(`lsp_server.model.loading`) and the prompt format's version
(`check_prompt_format`), since an adapter served with a layout other than the
one it was trained on quietly completes worse.

Pure: no torch. `SCHEMA_VERSION` counts incompatible changes to this file's
layout; adding an optional field is not one. A file without `schema_version`
is schema 1 (adapters written before it was recorded have the same layout).

`tasks` says what the adapter learned: "completion" (its prompt format, above)
and "next_edit" (with `next_edit_format` and its version). A file without it was
written before adapters learned next edits: completion only. The server uses an
adapter for next edits only where `learned_next_edits` says so.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from lsp_server.completion.prompt import FORMATS
from lsp_server.errors import CodetailorError

META_FILE = "codetailor.json"
SCHEMA_VERSION = 1
COMPLETION = "completion"
NEXT_EDIT = "next_edit"
TASKS = (COMPLETION, NEXT_EDIT)


@dataclass(frozen=True)
class BaseModelRef:
    """The base model an adapter was trained on: what `--model` needs, and its weights' id."""

    name: str
    fingerprint: str | None = None  # `loading.model_fingerprint` of the base weights
    source: str | None = None  # alias, gguf, directory or hub


@dataclass
class AdapterMeta:
    """Everything needed to use, trust and reproduce an adapter.

    Only what the server checks is typed (base model, prompt format); the rest is
    recorded for people and tools as `finetune` measured it. Every field may be
    missing from a hand-made file, so each has a default.
    """

    base_model: BaseModelRef | None = None
    prompt_format: str | None = None
    prompt_format_version: int | None = None
    # What the adapter learned (TASKS); a file without the key: completion only.
    tasks: list[str] = field(default_factory=lambda: [COMPLETION])
    next_edit_format: str | None = None  # the next-edit layout it learned (next_edit_prompt)
    next_edit_format_version: int | None = None
    repository: dict[str, Any] = field(default_factory=dict)  # name, path, commit, dirty
    created: str = ""  # ISO 8601, UTC
    codetailor_version: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # steps, tokens, device, LoRA
    data: dict[str, Any] = field(default_factory=dict)  # files, tokens, skips, redactions
    evaluation: dict[str, Any] = field(default_factory=dict)  # before, after, history
    # One entry per `finetune --feedback` run that was kept: when, config, before/after.
    preference_tuning: list[dict[str, Any]] = field(default_factory=list)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The file's text: an indented JSON object, ending in a newline."""
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> AdapterMeta:
        """Parse the file's text; a ValueError says what is wrong with it.

        Keys this version does not know are ignored, so an adapter from a later
        release with the same schema still loads.
        """
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        schema = raw.get("schema_version", 1)
        if not isinstance(schema, int) or schema > SCHEMA_VERSION:
            raise ValueError(
                f"metadata schema {schema} is newer than this codetailor reads "
                f"({SCHEMA_VERSION}); upgrade codetailor"
            )
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in raw.items() if k in known}
        base = values.get("base_model")
        if base is not None:
            if not isinstance(base, dict) or not isinstance(base.get("name", ""), str):
                raise ValueError("base_model must be an object with a name")
            values["base_model"] = BaseModelRef(
                name=base.get("name") or "?",
                fingerprint=base.get("fingerprint"),
                source=base.get("source"),
            )
        version = values.get("prompt_format_version")
        if version is not None and not isinstance(version, int):
            raise ValueError(f"prompt_format_version must be an integer, got {version!r}")
        tasks = values.get("tasks", [COMPLETION])
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise ValueError(f"tasks must be a list of names, got {tasks!r}")
        version = values.get("next_edit_format_version")
        if version is not None and not isinstance(version, int):
            raise ValueError(f"next_edit_format_version must be an integer, got {version!r}")
        return cls(**values)

    def learned_next_edits(self, name: str, version: int) -> bool:
        """Whether the adapter learned next edits in the layout `name` at `version` (the
        one the server would ask in); an adapter that learned another layout did not."""
        return (
            NEXT_EDIT in self.tasks
            and self.next_edit_format == name
            and self.next_edit_format_version in (None, version)
        )


def write_meta(folder: Path, meta: AdapterMeta) -> Path:
    """Write `meta` as `folder/codetailor.json`; return that file."""
    path = folder / META_FILE
    path.write_text(meta.to_json())
    return path


def has_meta(folder: Path) -> bool:
    """Whether `folder` holds a codetailor adapter's metadata (not merely PEFT files)."""
    return (folder / META_FILE).is_file()


def read_meta(folder: Path) -> AdapterMeta | None:
    """The adapter's metadata; None for a plain PEFT folder without `codetailor.json`."""
    path = folder / META_FILE
    if not path.is_file():
        return None
    try:
        return AdapterMeta.from_json(path.read_text())
    except (OSError, ValueError, TypeError) as exc:
        raise CodetailorError(f"adapter {folder}: cannot read {META_FILE}: {exc}") from exc


def check_prompt_format(meta: AdapterMeta, folder: Path) -> None:
    """Refuse an adapter trained on a prompt layout this server no longer builds.

    The recorded format must be one the prompt module knows, at the version it
    builds now; an adapter that records no version (hand-made) is taken as is.
    """
    name, version = meta.prompt_format, meta.prompt_format_version
    if name is None:
        return
    current = FORMATS.get(name)
    if current is None:
        raise CodetailorError(
            f"adapter {folder} was trained with prompt format '{name}', which this server "
            f"does not know: re-run codetailor finetune, or use the codetailor that made it"
        )
    if version is not None and version != current.version:
        raise CodetailorError(
            f"adapter {folder} was trained with prompt format {name} v{version}; this server "
            f"builds v{current.version}: re-run codetailor finetune"
        )


def learned_next_edits(folder: str | Path, layout: str | None) -> bool:
    """Whether the adapter in `folder` learned next edits in the layout `layout` (None:
    Sweep's, the server's default) at the version the server builds. A plain PEFT folder,
    an older adapter or an unreadable one did not: the base model answers its next edits."""
    from lsp_server.completion.next_edit_prompt import NEXT_EDIT_FORMATS, SWEEP

    fmt = NEXT_EDIT_FORMATS.get(layout or SWEEP.name)
    try:
        meta = read_meta(Path(folder).expanduser())
    except CodetailorError:
        return False
    return fmt is not None and meta is not None and meta.learned_next_edits(fmt.name, fmt.version)
