"""The feedback log's events: defined, written and read here, and nowhere else.

One event is one JSON object on one line of `events.jsonl`:
`{"v": 1, "event": "<kind>", "id": "<suggestion id>", "t": <unix time>, ...}`,
then the fields of its kind, in the order the classes below declare them. A
`shown` event holds what rebuilds the exact prompt (model, adapter, prompt
format, window, path, prefix, suffix, context snippets); the other kinds say
what became of the suggestion `id` names.

Every field but `id` has a default, decided here once, so a line from an older
codetailor that lacks a field (or holds null where a value belongs) reads the
same everywhere. `SCHEMA_VERSION` (the `v` key) counts incompatible changes to
the layout; adding a field or a kind is not one. A line of a newer schema is
refused with `NewerSchemaError`; a line that is not an event (torn by a crash,
garbled, of a kind this version does not know) raises a plain ValueError, and
the reader skips it. Pure: no file I/O here (`lsp_server.feedback.log` does it).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

SCHEMA_VERSION = 1

TriggerKind = Literal["line", "mid-line", "block"]
AcceptKind = Literal["full", "word", "line"]
RetentionCheck = Literal["retained_30s", "retained_120s"]
RETENTION_CHECKS: tuple[RetentionCheck, ...] = ("retained_30s", "retained_120s")

E = TypeVar("E", bound="FeedbackEvent")


class NewerSchemaError(ValueError):
    """An event written by a newer codetailor, in a layout this one cannot read."""


@dataclass(frozen=True, kw_only=True)
class FeedbackEvent:
    """One line of the log: which suggestion (`id`) and when (`t`, seconds since the epoch)."""

    KIND: ClassVar[str] = ""
    id: str
    t: float = 0.0

    @property
    def event(self) -> str:
        """The event's kind, as the `event` key on disk names it."""
        return self.KIND

    def body(self) -> dict[str, Any]:
        """The fields after `v`, `event`, `id` and `t`, as they are written."""
        return {}

    def to_json(self) -> str:
        """The event as one line of compact JSON (no newline)."""
        head = {"v": SCHEMA_VERSION, "event": self.event, "id": self.id, "t": self.t}
        return json.dumps(head | self.body(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls: type[E], line: str | bytes) -> E:
        """Parse one line; a ValueError (NewerSchemaError for a newer schema) says why not.

        Called on `FeedbackEvent`, it reads any kind; on a kind, only that kind.
        """
        raw = json.loads(line)
        if not isinstance(raw, dict) or not isinstance(raw.get("event"), str):
            raise ValueError("not a feedback event")
        schema = raw.get("v", 1)
        if not isinstance(schema, int):
            raise ValueError(f"schema version must be an integer, got {schema!r}")
        if schema > SCHEMA_VERSION:
            raise NewerSchemaError(
                f"an event of schema {schema} is newer than this codetailor reads "
                f"({SCHEMA_VERSION}); upgrade codetailor"
            )
        read = _READERS.get(raw["event"])
        if read is None:
            raise ValueError(f"unknown event kind {raw['event']!r}")
        try:
            event = read(raw)
        except (TypeError, KeyError) as exc:
            raise ValueError(f"malformed {raw['event']} event: {exc}") from exc
        if not isinstance(event, cls):
            raise ValueError(f"a {event.event} event, not {cls.KIND or 'an event'}")
        return event


@dataclass(frozen=True, kw_only=True)
class Shown(FeedbackEvent):
    """A suggestion was shown; the prefix is cut to the window's part (see `prefix_start_line`)
    and every text is secret-redacted."""

    KIND: ClassVar[str] = "shown"
    uri: str = ""
    path: str | None = None  # relative to the workspace root
    language: str | None = None
    trigger: str | None = None  # a TriggerKind
    model: str | None = None
    adapter: str | None = None
    prompt_format: str | None = None
    window_tokens: int | None = None  # None: the prompt builder's default
    repo: str | None = None
    prefix: str = ""
    prefix_start_line: int = 0  # the document line the stored prefix starts on
    suffix: str = ""
    context: tuple[tuple[str, str], ...] = ()  # (path, text) as they went into the prompt
    suggestion: str = ""
    latency_ms: float = 0.0
    source: str = "editor"  # who was typing: "editor", or "simulated"
    # The show-or-stay-quiet decision (lsp_server.session.quiet.QuietDecision.as_dict):
    # score, threshold, filter, explore, p_show, features; None where no filter applied.
    quiet: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "path": self.path,
            "language": self.language,
            "trigger": self.trigger,
            "model": self.model,
            "adapter": self.adapter,
            "prompt_format": self.prompt_format,
            "window_tokens": self.window_tokens,
            "repo": self.repo,
            "prefix": self.prefix,
            "prefix_start_line": self.prefix_start_line,
            "suffix": self.suffix,
            "context": [[p, t] for p, t in self.context],
            "suggestion": self.suggestion,
            "latency_ms": self.latency_ms,
            "source": self.source,
        } | ({} if self.quiet is None else {"quiet": self.quiet})

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Shown:
        return cls(
            **_head(raw),
            uri=_text(raw, "uri"),
            path=_maybe_text(raw, "path"),
            language=_maybe_text(raw, "language"),
            trigger=_maybe_text(raw, "trigger"),
            model=_maybe_text(raw, "model"),
            adapter=_maybe_text(raw, "adapter"),
            prompt_format=_maybe_text(raw, "prompt_format"),
            window_tokens=None if raw.get("window_tokens") is None else int(raw["window_tokens"]),
            repo=_maybe_text(raw, "repo"),
            prefix=_text(raw, "prefix"),
            prefix_start_line=int(raw.get("prefix_start_line") or 0),
            suffix=_text(raw, "suffix"),
            context=tuple((str(p), str(t)) for p, t in raw.get("context") or ()),
            suggestion=_text(raw, "suggestion"),
            latency_ms=float(raw.get("latency_ms") or 0.0),
            source=_text(raw, "source") or "editor",
            quiet=_maybe_dict(raw, "quiet"),
        )


@dataclass(frozen=True, kw_only=True)
class Suppressed(FeedbackEvent):
    """A suggestion the show-or-stay-quiet filter kept from the user: where, what (redacted),
    and the decision (as `Shown.quiet`). It has no outcome; `feedback stats` counts it."""

    KIND: ClassVar[str] = "suppressed"
    uri: str = ""
    path: str | None = None
    language: str | None = None
    suggestion: str = ""  # a completion's text; a next edit's window as rewritten
    source: str = "editor"
    quiet: dict[str, Any] | None = None
    suggestions: str = "completion"  # what was kept quiet: "completion" or "next_edit"

    def body(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "path": self.path,
            "language": self.language,
            "suggestion": self.suggestion,
            "source": self.source,
            "quiet": self.quiet,
            "suggestions": self.suggestions,
        }

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Suppressed:
        return cls(
            **_head(raw),
            uri=_text(raw, "uri"),
            path=_maybe_text(raw, "path"),
            language=_maybe_text(raw, "language"),
            suggestion=_text(raw, "suggestion"),
            source=_text(raw, "source") or "editor",
            quiet=_maybe_dict(raw, "quiet"),
            suggestions=_text(raw, "suggestions") or "completion",
        )


@dataclass(frozen=True, kw_only=True)
class Accepted(FeedbackEvent):
    """The user accepted all of the suggestion, or its next word or line; `chars` is the
    length of what the editor inserted, where it said (else it follows from `kind`)."""

    KIND: ClassVar[str] = "accepted"
    kind: str = "full"  # an AcceptKind
    chars: int | None = None

    def body(self) -> dict[str, Any]:
        return {"kind": self.kind} | ({} if self.chars is None else {"chars": self.chars})

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Accepted:
        chars = raw.get("chars")
        return cls(**_head(raw), kind=_text(raw, "kind") or "full", chars=_maybe_int(chars))


@dataclass(frozen=True, kw_only=True)
class TypedThrough(FeedbackEvent):
    """The user typed the suggestion's first `chars` characters themselves."""

    KIND: ClassVar[str] = "typed_through"
    chars: int = 0

    def body(self) -> dict[str, Any]:
        return {"chars": self.chars}

    @classmethod
    def read(cls, raw: dict[str, Any]) -> TypedThrough:
        return cls(**_head(raw), chars=int(raw.get("chars") or 0))


@dataclass(frozen=True, kw_only=True)
class Superseded(FeedbackEvent):
    """A newer suggestion replaced this one before the user took it."""

    KIND: ClassVar[str] = "superseded"

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Superseded:
        return cls(**_head(raw))


@dataclass(frozen=True, kw_only=True)
class Dismissed(FeedbackEvent):
    """The user hid the suggestion untaken; `reason` is the editor's word for how."""

    KIND: ClassVar[str] = "dismissed"
    reason: str | None = None

    def body(self) -> dict[str, Any]:
        return {"reason": self.reason} if self.reason else {}

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Dismissed:
        return cls(**_head(raw), reason=_maybe_text(raw, "reason"))


@dataclass(frozen=True, kw_only=True)
class Retained(FeedbackEvent):
    """A retention check: whether the accepted text was still there (`check` says when)."""

    KIND: ClassVar[str] = "retained"
    check: RetentionCheck = "retained_30s"
    kept: bool = False

    @property
    def event(self) -> str:
        return self.check

    def body(self) -> dict[str, Any]:
        return {"kept": self.kept}

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Retained:
        late = raw["event"] == "retained_120s"
        check: RetentionCheck = "retained_120s" if late else "retained_30s"
        return cls(**_head(raw), check=check, kept=bool(raw.get("kept")))


@dataclass(frozen=True, kw_only=True)
class Typed(FeedbackEvent):
    """What the user typed at the suggestion's place, to the end of its line (redacted)."""

    KIND: ClassVar[str] = "typed"
    text: str = ""

    def body(self) -> dict[str, Any]:
        return {"text": self.text}

    @classmethod
    def read(cls, raw: dict[str, Any]) -> Typed:
        return cls(**_head(raw), text=_text(raw, "text"))


@dataclass(frozen=True, kw_only=True)
class NextEditShown(FeedbackEvent):
    """A next edit was shown: the window (from `start_line`) as it was, as it is and as
    the model rewrote it; its acceptance and dismissal are `accepted` and `dismissed`
    events with its id. Texts are secret-redacted."""

    KIND: ClassVar[str] = "next_edit_shown"
    uri: str = ""
    path: str | None = None
    model: str | None = None
    adapter: str | None = None
    prompt_format: str | None = None  # the next-edit layout (see completion/next_edit_prompt)
    start_line: int = 0
    original: str = ""
    current: str = ""
    updated: str = ""
    latency_ms: float = 0.0
    source: str = "editor"
    # The show-or-stay-quiet decision, as `Shown.quiet` (features of EDIT_FEATURES).
    quiet: dict[str, Any] | None = None

    def body(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "path": self.path,
            "model": self.model,
            "adapter": self.adapter,
            "prompt_format": self.prompt_format,
            "start_line": self.start_line,
            "original": self.original,
            "current": self.current,
            "updated": self.updated,
            "latency_ms": self.latency_ms,
            "source": self.source,
        } | ({} if self.quiet is None else {"quiet": self.quiet})

    @classmethod
    def read(cls, raw: dict[str, Any]) -> NextEditShown:
        return cls(
            **_head(raw),
            uri=_text(raw, "uri"),
            path=_maybe_text(raw, "path"),
            model=_maybe_text(raw, "model"),
            adapter=_maybe_text(raw, "adapter"),
            prompt_format=_maybe_text(raw, "prompt_format"),
            start_line=int(raw.get("start_line") or 0),
            original=_text(raw, "original"),
            current=_text(raw, "current"),
            updated=_text(raw, "updated"),
            latency_ms=float(raw.get("latency_ms") or 0.0),
            source=_text(raw, "source") or "editor",
            quiet=_maybe_dict(raw, "quiet"),
        )


_READERS: dict[str, Callable[[dict[str, Any]], FeedbackEvent]] = {
    "shown": Shown.read,
    "accepted": Accepted.read,
    "typed_through": TypedThrough.read,
    "superseded": Superseded.read,
    "dismissed": Dismissed.read,
    "retained_30s": Retained.read,
    "retained_120s": Retained.read,
    "typed": Typed.read,
    "next_edit_shown": NextEditShown.read,
    "suppressed": Suppressed.read,
}


def _head(raw: dict[str, Any]) -> dict[str, Any]:
    return {"id": str(raw.get("id")), "t": float(raw.get("t") or 0.0)}


def _text(raw: dict[str, Any], key: str) -> str:
    value = raw.get(key)
    return "" if value is None else str(value)


def _maybe_text(raw: dict[str, Any], key: str) -> str | None:
    value = raw.get(key)
    return None if value is None else str(value)


def _maybe_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _maybe_dict(raw: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = raw.get(key)
    return dict(value) if isinstance(value, dict) else None
