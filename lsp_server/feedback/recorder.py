"""The recorder: what was suggested, and what the user did with it, as log events.

`FeedbackRecorder` turns what an editor session sees (a suggestion shown, typed
through, accepted, replaced, dismissed; every document change) into the typed
events of `lsp_server.feedback.events` and appends them to the repository's
`EventLog`. What it adds on the way:

- Secret redaction with the same filter as training data
  (`lsp_server.repo.secrets.redact`), before anything reaches the disk.
- A `shown` event holds what rebuilds the exact prompt: model, adapter, prompt
  format, window, the file's path, the prefix (cut on a line boundary that keeps
  the line numbering modulo the window step), the suffix's start and
  the context snippets. `completion.window.PromptWindow.prompt_for` rebuilds it.
- Retention checks (is accepted text still there 30 s and 2 min later?) and the
  `typed` event: what the place of each recent suggestion says once the user has
  finished its line, accepted or not (the text a preference pair prefers to an
  ignored suggestion). The clock is injectable, so these need no sleeping.

Every method is a no-op while `enabled` is False (the `feedback: false` setting).
`lsp_server.feedback.recording.Recording` drives it for a session, on its own thread:
`shown(Suggestion(...))` when a model answer is shown; `typed_through(id, chars)`
when typing-through serves it; `accepted(id, kind)` from `codetailor.accepted`;
`superseded(id)` when a newer answer replaces it untaken; `dismissed(id)` where
the editor says so; `document_changed(uri, text)` after every didChange; `poll()`
now and then; `close()` at shutdown.
"""

from __future__ import annotations

import dataclasses
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_server.completion.window import WINDOW_STEP_LINES
from lsp_server.feedback.events import (
    Accepted,
    AcceptKind,
    Dismissed,
    NextEditShown,
    Retained,
    RetentionCheck,
    Shown,
    Superseded,
    Suppressed,
    TriggerKind,
    Typed,
    TypedThrough,
)
from lsp_server.feedback.log import DEFAULT_MAX_BYTES, EventLog
from lsp_server.repo.secrets import redact

# What of a document a `shown` event keeps: enough for any prompt window we build
# (4,096 tokens on a GPU is ~16,000 characters of code).
MAX_PREFIX_CHARS = 24_000
MAX_SUFFIX_CHARS = 6_000
# Retention checks: seconds after an acceptance, and the event each one records.
RETENTION_CHECKS: tuple[tuple[float, RetentionCheck], ...] = (
    (30.0, "retained_30s"),
    (120.0, "retained_120s"),
)
# How much of the cursor's line before the accepted text a retention check looks for,
# so that a one-word acceptance is not "kept" just because the word occurs elsewhere.
ANCHOR_CHARS = 24
# What the user typed where a suggestion was shown (the `typed` event): followed through
# didChange until the line is finished, at most this many characters, for at most
# FOLLOW suggestions at a time (the oldest is given up first).
MAX_TYPED_CHARS = 200
FOLLOW = 64
# How much of the text on each side of the place a follow checks is still unchanged.
EDGE_CHARS = 32
_FIRST_WORD = re.compile(r"\s*\w+|\s*[^\w\s]+")
_FIRST_LINE = re.compile(r"\n*[^\n]*\n?")


def classify_trigger(prefix: str, suffix: str, suggestion: str) -> TriggerKind:
    """`block` for a suggestion of several lines, `line` at the start of a line (nothing
    but indentation before the cursor), `mid-line` otherwise."""
    if "\n" in suggestion.strip("\n") or (suggestion.startswith("\n") and suggestion.strip()):
        return "block"
    line_before = prefix.rsplit("\n", 1)[-1]
    return "line" if not line_before.strip() else "mid-line"


def accepted_part(suggestion: str, kind: AcceptKind) -> str:
    """What an acceptance of `kind` inserts: all, the next word, or the rest of the line."""
    if kind == "word":
        match = _FIRST_WORD.match(suggestion)
        return match.group(0) if match else suggestion
    if kind == "line":
        return _FIRST_LINE.match(suggestion).group(0)  # type: ignore[union-attr]
    return suggestion


def clip_prefix_for_log(prefix: str, max_chars: int = MAX_PREFIX_CHARS) -> tuple[str, int]:
    """(the prefix's end, the document line it starts on): at most `max_chars`, cut at a
    line whose number is a multiple of WINDOW_STEP_LINES (the step of the prompt window's
    start), so the rebuilt prompt's window starts where the real one did."""
    if len(prefix) <= max_chars:
        return prefix, 0
    lines = prefix.split("\n")
    total, first = len(prefix), 0
    # Drop whole steps of lines from the start until what is left fits.
    while total > max_chars and first + WINDOW_STEP_LINES < len(lines):
        total -= sum(len(line) + 1 for line in lines[first : first + WINDOW_STEP_LINES])
        first += WINDOW_STEP_LINES
    return "\n".join(lines[first:]), first


@dataclass
class _Pending:
    """An accepted suggestion whose retention is still to be checked."""

    id: str
    uri: str
    needle: str
    due: list[tuple[float, RetentionCheck]]


@dataclass
class _Follow:
    """A shown suggestion's place, to record what the user then typed there: the document
    reads `head + typed + tail`, with `head` ending in `before` and `tail` starting with
    `after`, of lengths `head_len` and `tail_len`."""

    id: str
    uri: str
    head_len: int
    tail_len: int
    before: str
    after: str
    typed: str = ""

    def read(self, text: str) -> str | None:
        """What stands between the place's two sides in `text`; None if either changed."""
        end = len(text) - self.tail_len
        if (
            end < self.head_len
            or text[self.head_len - len(self.before) : self.head_len] != self.before
        ):
            return None
        if text[end : end + len(self.after)] != self.after:
            return None
        return text[self.head_len : min(end, self.head_len + MAX_TYPED_CHARS)]


def finished_line(typed: str) -> str | None:
    """`typed` up to the end of its first non-blank line, once that line is finished (or
    MAX_TYPED_CHARS long); None while the user is still on it."""
    body = typed.lstrip()
    cut = body.find("\n")
    if cut >= 0:
        return typed[: len(typed) - len(body) + cut]
    return typed if len(typed) >= MAX_TYPED_CHARS else None


@dataclass
class _Live:
    """What the recorder remembers of a shown suggestion to follow what becomes of it."""

    uri: str
    anchor: str
    suggestion: str
    accepted: str = ""
    done: bool = False  # all of it accepted: a later accept of it is not logged again


@dataclass(frozen=True, kw_only=True)
class Suggestion:
    """A suggestion as the editor showed it, before the log clips and redacts it."""

    id: str
    uri: str
    path: str | None = None  # relative to the workspace root
    language: str | None = None
    prefix: str  # the document before the cursor, whole
    suffix: str = ""  # the document after the cursor, whole
    text: str  # what was suggested
    latency_ms: float
    context: Sequence[tuple[str, str]] = ()  # (path, text) pairs as they went into the prompt
    model: str | None = None
    adapter: str | None = None
    prompt_format: str | None = None
    window_tokens: int | None = None
    repo: str | None = None
    trigger: TriggerKind | None = None  # None: classified from the text
    source: str = "editor"  # who was typing: "editor", or "simulated" (the simulated user)
    quiet: dict[str, Any] | None = None  # the show-or-stay-quiet decision, where one was made


class FeedbackRecorder:
    """The session's interface to the log, in plain values.

    Every method is a no-op while `enabled` is False (the `feedback: false`
    setting), so the session may call them unconditionally.
    """

    def __init__(
        self,
        folder: Path,
        *,
        enabled: bool = True,
        max_bytes: int = DEFAULT_MAX_BYTES,
        clock: Callable[[], float] = time.time,
        remember: int = 512,
    ) -> None:
        self.log = EventLog(folder, max_bytes)
        self.enabled = enabled
        self.clock = clock
        self._remember = remember
        self._live: OrderedDict[str, _Live] = OrderedDict()
        self._pending: list[_Pending] = []
        self._texts: dict[str, str] = {}
        self._follows: OrderedDict[str, _Follow] = OrderedDict()
        self._lock = threading.Lock()
        self.redactions = 0  # secrets removed so far (for status)

    def _clean(self, text: str) -> str:
        clean, found = redact(text)
        self.redactions += sum(found.values())
        return clean

    def _shown_event(self, s: Suggestion) -> Shown:
        """The `shown` event of `s`: prefix clipped to the window's part, texts redacted."""
        kept_prefix, start_line = clip_prefix_for_log(s.prefix)
        return Shown(
            id=s.id,
            t=self.clock(),
            # A file's name can hold a token (`deploy-ghp_....sh`): redacted like its text.
            # The recorder's own lookups keep the raw uri, so retention checks still match.
            uri=self._clean(s.uri),
            path=self._clean(s.path) if s.path is not None else None,
            language=s.language,
            trigger=s.trigger or classify_trigger(s.prefix, s.suffix, s.text),
            model=s.model,
            adapter=s.adapter,
            prompt_format=s.prompt_format,
            window_tokens=s.window_tokens,
            repo=s.repo,
            prefix=self._clean(kept_prefix),
            prefix_start_line=start_line,
            suffix=self._clean(s.suffix[:MAX_SUFFIX_CHARS]),
            context=tuple((self._clean(p), self._clean(t)) for p, t in s.context),
            suggestion=self._clean(s.text),
            latency_ms=round(float(s.latency_ms), 1),
            source=s.source,
            quiet=s.quiet,
        )

    def shown(self, s: Suggestion) -> None:
        """A suggestion was shown: log it and follow what becomes of it."""
        if not self.enabled or not s.text:
            return
        event = self._shown_event(s)
        anchor = s.prefix.rsplit("\n", 1)[-1][-ANCHOR_CHARS:]
        with self._lock:
            self._live[s.id] = _Live(s.uri, anchor, s.text)
            while len(self._live) > self._remember:
                self._live.popitem(last=False)
            before, after = s.prefix[-EDGE_CHARS:], s.suffix[:EDGE_CHARS]
            self._follows[s.id] = _Follow(s.id, s.uri, len(s.prefix), len(s.suffix), before, after)
            while len(self._follows) > FOLLOW:
                self._follows.popitem(last=False)
        self.log.append(event)

    def suppressed(self, s: Suggestion) -> None:
        """The filter kept suggestion `s` from the user: log where, what and its decision."""
        if not self.enabled or not s.text:
            return
        self.log.append(
            Suppressed(
                id=s.id,
                t=self.clock(),
                uri=self._clean(s.uri),
                path=self._clean(s.path) if s.path is not None else None,
                language=s.language,
                suggestion=self._clean(s.text),
                source=s.source,
                quiet=s.quiet,
            )
        )

    def next_edit_shown(self, event: NextEditShown) -> None:
        """A next edit was shown: log it, its texts redacted."""
        if not self.enabled:
            return
        clean = self._clean
        with self._lock:  # accepted once, like a completion (its retention followed too)
            self._live[event.id] = _Live(event.uri, "", event.updated)
            while len(self._live) > self._remember:
                self._live.popitem(last=False)
        self.log.append(
            dataclasses.replace(
                event,
                t=self.clock(),
                uri=clean(event.uri),
                path=clean(event.path) if event.path is not None else None,
                original=clean(event.original),
                current=clean(event.current),
                updated=clean(event.updated),
            )
        )

    def next_edit_suppressed(self, event: NextEditShown) -> None:
        """The filter kept next edit `event` from the user: log where, the window as
        rewritten (redacted) and its decision, as a `suppressed` event."""
        if not self.enabled:
            return
        self.log.append(
            Suppressed(
                id=event.id,
                t=self.clock(),
                uri=self._clean(event.uri),
                path=self._clean(event.path) if event.path is not None else None,
                suggestion=self._clean(event.updated),
                source=event.source,
                quiet=event.quiet,
                suggestions="next_edit",
            )
        )

    def accepted(self, id: str, kind: AcceptKind = "full", text: str | None = None) -> None:
        """The user accepted all of suggestion `id`, or its next word or line; `text` is
        what was inserted where the editor says (else it follows from `kind`).

        Logged once per suggestion shown (a partial accept until the whole of it is in):
        a client repeating the command writes nothing more (issue 28: 2,000 accepts of
        one suggestion wrote 1,147 synced events)."""
        if not self.enabled:
            return
        with self._lock:
            live = self._live.get(id)
            if live is None or live.done:
                return
            rest = live.suggestion[len(live.accepted) :]
            piece = text if text is not None else accepted_part(rest, kind)
            live.accepted += piece
            live.done = kind == "full" or not piece or len(live.accepted) >= len(live.suggestion)
            self._schedule(id, live)
        chars = len(text) if text is not None else None
        self.log.append(Accepted(id=id, t=self.clock(), kind=kind, chars=chars))

    def typed_through(self, id: str, chars: int) -> None:
        """The user typed the first `chars` characters of suggestion `id` themselves."""
        if not self.enabled:
            return
        with self._lock:
            live = self._live.get(id)
            if live is not None and chars > len(live.accepted):
                live.accepted = live.suggestion[:chars]
                self._schedule(id, live)
        self.log.append(TypedThrough(id=id, t=self.clock(), chars=int(chars)))

    def superseded(self, id: str) -> None:
        """A newer suggestion replaced `id` before the user took it."""
        if self.enabled:
            self.log.append(Superseded(id=id, t=self.clock()))

    def dismissed(self, id: str, reason: str | None = None) -> None:
        """The user dismissed `id` (Escape), or the cursor left it; `reason` says which."""
        if self.enabled:
            self.log.append(Dismissed(id=id, t=self.clock(), reason=reason or None))

    def _schedule(self, id: str, live: _Live) -> None:
        """(Re)start the retention checks of `id` for what has been accepted of it so far."""
        now = self.clock()
        self._pending = [p for p in self._pending if p.id != id]
        needle = (live.anchor + live.accepted).rstrip()
        if needle.strip():
            due = [(now + after, name) for after, name in RETENTION_CHECKS]
            self._pending.append(_Pending(id, live.uri, needle, due))

    def document_changed(self, uri: str, text: str, now: float | None = None) -> None:
        """The document `uri` now reads `text`. Checks that fell due before this change
        are answered from the text as it was until now."""
        if not self.enabled:
            return
        now = self.clock() if now is None else now
        with self._lock:
            previous = self._texts.get(uri)
            results = self._due(now, uri, previous) if previous is not None else []
            if any(p.uri == uri for p in self._pending):
                self._texts[uri] = text
            else:
                self._texts.pop(uri, None)
            typed = self._follow(uri, text)
        for id, check, kept in results:
            self.log.append(Retained(id=id, t=self.clock(), check=check, kept=kept))
        for id, words in typed:
            self.log.append(Typed(id=id, t=self.clock(), text=self._clean(words)))

    def _follow(self, uri: str, text: str) -> list[tuple[str, str]]:
        """(id, what was typed) of each followed place in `uri` whose line is finished, or
        whose sides were edited (then what was typed until then, if anything)."""
        done: list[tuple[str, str]] = []
        for follow in [f for f in self._follows.values() if f.uri == uri]:
            typed = follow.read(text)
            line = finished_line(typed) if typed is not None else follow.typed
            if line is None:
                follow.typed = typed or ""
                continue
            del self._follows[follow.id]
            if line.strip():
                done.append((follow.id, line))
        return done

    def poll(self, now: float | None = None) -> None:
        """Answer every check that is due, from each document's last known text."""
        if not self.enabled:
            return
        now = self.clock() if now is None else now
        with self._lock:
            results = [r for uri, t in list(self._texts.items()) for r in self._due(now, uri, t)]
        for id, check, kept in results:
            self.log.append(Retained(id=id, t=self.clock(), check=check, kept=kept))

    def _due(self, now: float, uri: str, text: str) -> list[tuple[str, RetentionCheck, bool]]:
        results: list[tuple[str, RetentionCheck, bool]] = []
        for pending in self._pending:
            if pending.uri != uri:
                continue
            while pending.due and pending.due[0][0] <= now:
                _, name = pending.due.pop(0)
                results.append((pending.id, name, _still_there(pending.needle, text)))
        self._pending = [p for p in self._pending if p.due]
        return results

    def close(self) -> None:
        self.log.close()


def _still_there(needle: str, text: str) -> bool:
    """Whether the accepted text (with the line before it) is in `text`, ignoring how
    trailing whitespace of lines changed."""
    if needle in text:
        return True
    strip = re.compile(r"[ \t]+\n")
    return strip.sub("\n", needle) in strip.sub("\n", text)
