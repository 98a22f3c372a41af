"""The local feedback log: what was suggested, and what the user did with it.

One log per repository, under `$CODETAILOR_HOME/feedback/<repo key>/`, as JSON
lines in `events.jsonl` (the newest segment) and `events.1.jsonl` (the one
before). Nothing here is ever sent anywhere.

- Append-only and crash-safe: each event is one `os.write` of one line on a
  file opened with O_APPEND, then `os.fsync`; a killed server loses at most the
  event it was writing. A torn last line is skipped on read and cut off before
  the next append, so it never glues onto a good event.
- Bounded: when the newest segment would pass half of `max_bytes`, it becomes
  `events.1.jsonl` and the older segment is dropped, oldest first.
- Secret-redacted with the same filter as training data
  (`lsp_server.repo.secrets.redact`), before anything reaches the disk.
- A `shown` event holds what rebuilds the exact prompt: model, adapter, prompt
  format, window, the file's path, the prefix (cut on a line boundary that keeps
  the line numbering modulo the window step), the suffix's start and
  the context snippets. `completion.window.PromptWindow.prompt_for` rebuilds it.

Pure: imports neither pygls nor torch. The clock is injectable, so retention
checks (is accepted text still there 30 s and 2 min later?) need no sleeping.

How the session drives it (one recorder per workspace root; the wiring is
`lsp_server.session.recording.Recording`, which `Session` calls):
  `FeedbackRecorder(feedback_dir(root, cache_home()), enabled=settings.feedback)`;
  `shown(...)` when a model answer is shown, with `prefix=text[:offset]`,
  `suffix=text[offset:]`, `context_snippets=[(s.path, s.text) for s in
  completion.context[::-1]]` (the Completer reports them nearest-last) and
  `window_tokens=completer.window_tokens`; `typed_through(id, chars)` when
  typing-through serves it; `accepted(id, kind)` from `codetailor.accepted`
  (whose arguments must then carry the id); `superseded(id)` when a newer
  answer replaces it untaken; `dismissed(id)` where the editor says so;
  `document_changed(uri, text)` after every didChange (it also records, as `typed`, what
  the place of each recent suggestion says once the user has finished its line, accepted
  or not: the text a preference pair prefers to an ignored suggestion); `poll()` now and then;
  `enabled = ...` on a settings change; `close()` at shutdown.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lsp_server.completion.window import WINDOW_STEP_LINES
from lsp_server.repo.secrets import redact

TriggerKind = Literal["line", "mid-line", "block"]
AcceptKind = Literal["full", "word", "line"]
EVENTS = "events.jsonl"
OLDER = "events.1.jsonl"
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
# What of a document a `shown` event keeps: enough for any prompt window we build
# (4,096 tokens on a GPU is ~16,000 characters of code).
MAX_PREFIX_CHARS = 24_000
MAX_SUFFIX_CHARS = 6_000
# Retention checks: seconds after an acceptance, and the event each one records.
RETENTION_CHECKS: tuple[tuple[float, str], ...] = ((30.0, "retained_30s"), (120.0, "retained_120s"))
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


def repo_key(root: str | Path) -> str:
    """The folder name of a repository's log: its name and a hash of its absolute path."""
    resolved = Path(root).expanduser().resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:12]
    name = re.sub(r"[^\w.-]", "_", resolved.name) or "root"
    return f"{name}-{digest}"


def feedback_dir(root: str | Path, home: Path) -> Path:
    """Where the log of the repository at `root` lives under the cache home `home`."""
    return home / "feedback" / repo_key(root)


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


class EventLog:
    """Append-only, size-bounded JSON lines in one folder; reads skip torn lines."""

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.folder = folder
        self.max_bytes = max_bytes
        self._fd: int | None = None
        self._size = 0
        self._lock = threading.Lock()
        self.written = 0  # events appended (and fsynced) by this process

    @property
    def path(self) -> Path:
        return self.folder / EVENTS

    def _open(self) -> int:
        if self._fd is not None and os.fstat(self._fd).st_nlink == 0:
            self.close()  # `codetailor feedback clear` removed the file: start a new one
        if self._fd is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            _cut_torn_tail(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._size = os.fstat(self._fd).st_size
        return self._fd

    def append(self, event: dict[str, Any]) -> None:
        """Write one event as one line: one write, then fsync."""
        data = (json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
        with self._lock:
            fd = self._open()
            if self._size and self._size + len(data) > self.max_bytes // 2:
                self._rotate()
                fd = self._open()
            os.write(fd, data)
            os.fsync(fd)
            self._size += len(data)
            self.written += 1

    def _rotate(self) -> None:
        """The newest segment becomes the older one; the older one is dropped."""
        self.close()
        os.replace(self.path, self.folder / OLDER)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(read_events(self.folder))


def _cut_torn_tail(path: Path) -> None:
    """Truncate a last line without its newline (a write cut short by a crash)."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            back = min(size, 1 << 20)
            f.seek(size - back)
            tail = f.read(back)
            f.truncate(size - back + tail.rfind(b"\n") + 1)
    except FileNotFoundError:
        return


def read_events(folder: Path) -> list[dict[str, Any]]:
    """Every readable event, oldest first; a torn or garbled line is skipped."""
    events: list[dict[str, Any]] = []
    for name in (OLDER, EVENTS):
        try:
            raw = (folder / name).read_bytes()
        except FileNotFoundError:
            continue
        for line in raw.split(b"\n"):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and "event" in event:
                events.append(event)
    return events


@dataclass
class _Pending:
    """An accepted suggestion whose retention is still to be checked."""

    id: str
    uri: str
    needle: str
    due: list[tuple[float, str]]


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

    def _write(self, event: str, id: str, **fields: Any) -> None:
        self.log.append({"v": FORMAT_VERSION, "event": event, "id": id, "t": self.clock()} | fields)

    def shown(
        self,
        id: str,
        uri: str,
        path: str | None,
        language: str | None,
        trigger_kind: TriggerKind | None,
        model: str | None,
        adapter: str | None,
        prompt_format: str | None,
        prefix: str,
        suffix: str,
        context_snippets: Sequence[tuple[str, str]],
        suggestion: str,
        latency_ms: float,
        *,
        window_tokens: int | None = None,
        repo: str | None = None,
        source: str = "editor",
    ) -> None:
        """A suggestion was shown. `context_snippets` are (path, text) pairs as they went
        into the prompt; `trigger_kind` None classifies it here; `source` says who was
        typing ("editor", or "simulated" for the simulated user)."""
        if not self.enabled or not suggestion:
            return
        kept_prefix, start_line = clip_prefix_for_log(prefix)
        fields = {
            "uri": uri,
            "path": path,
            "language": language,
            "trigger": trigger_kind or classify_trigger(prefix, suffix, suggestion),
            "model": model,
            "adapter": adapter,
            "prompt_format": prompt_format,
            "window_tokens": window_tokens,
            "repo": repo,
            "prefix": self._clean(kept_prefix),
            "prefix_start_line": start_line,
            "suffix": self._clean(suffix[:MAX_SUFFIX_CHARS]),
            "context": [[p, self._clean(t)] for p, t in context_snippets],
            "suggestion": self._clean(suggestion),
            "latency_ms": round(float(latency_ms), 1),
            "source": source,
        }
        anchor = prefix.rsplit("\n", 1)[-1][-ANCHOR_CHARS:]
        with self._lock:
            self._live[id] = _Live(uri, anchor, suggestion)
            while len(self._live) > self._remember:
                self._live.popitem(last=False)
            self._follows[id] = _Follow(
                id, uri, len(prefix), len(suffix), prefix[-EDGE_CHARS:], suffix[:EDGE_CHARS]
            )
            while len(self._follows) > FOLLOW:
                self._follows.popitem(last=False)
        self._write("shown", id, **fields)

    def accepted(self, id: str, kind: AcceptKind = "full", text: str | None = None) -> None:
        """The user accepted all of suggestion `id`, or its next word or line; `text` is
        what was inserted where the editor says (else it follows from `kind`)."""
        if not self.enabled:
            return
        with self._lock:
            live = self._live.get(id)
            if live is not None:
                rest = live.suggestion[len(live.accepted) :]
                piece = text if text is not None else accepted_part(rest, kind)
                live.accepted += piece
                self._schedule(id, live)
        chars = len(text) if text is not None else None
        self._write("accepted", id, kind=kind, **({"chars": chars} if chars is not None else {}))

    def typed_through(self, id: str, chars: int) -> None:
        """The user typed the first `chars` characters of suggestion `id` themselves."""
        if not self.enabled:
            return
        with self._lock:
            live = self._live.get(id)
            if live is not None and chars > len(live.accepted):
                live.accepted = live.suggestion[:chars]
                self._schedule(id, live)
        self._write("typed_through", id, chars=int(chars))

    def superseded(self, id: str) -> None:
        """A newer suggestion replaced `id` before the user took it."""
        if self.enabled:
            self._write("superseded", id)

    def dismissed(self, id: str, reason: str | None = None) -> None:
        """The user dismissed `id` (Escape), or the cursor left it; `reason` says which."""
        if self.enabled:
            self._write("dismissed", id, **({"reason": reason} if reason else {}))

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
        for id, name, kept in results:
            self._write(name, id, kept=kept)
        for id, words in typed:
            self._write("typed", id, text=self._clean(words))

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
        for id, name, kept in results:
            self._write(name, id, kept=kept)

    def _due(self, now: float, uri: str, text: str) -> list[tuple[str, str, bool]]:
        results: list[tuple[str, str, bool]] = []
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


@dataclass
class SuggestionRecord:
    """A shown suggestion with everything the log says became of it."""

    id: str
    shown: dict[str, Any]
    accepted: list[str] = field(default_factory=list)  # kinds, in order
    typed_chars: int = 0
    superseded: bool = False
    dismissed: bool = False
    retained: dict[str, bool] = field(default_factory=dict)  # "retained_30s" -> kept
    typed: str | None = None  # what the document then said at the place, to the line's end

    @property
    def time(self) -> float:
        return float(self.shown.get("t", 0.0))

    @property
    def suggestion(self) -> str:
        return str(self.shown.get("suggestion", ""))

    @property
    def was_accepted(self) -> bool:
        """Accepted in full, in part, or typed through to its end."""
        typed_all = self.typed_chars >= len(self.suggestion.rstrip()) > 0
        return bool(self.accepted) or typed_all

    @property
    def was_kept(self) -> bool | None:
        """Accepted and still there at the last check; None if no check was made."""
        if not self.was_accepted:
            return False
        for name in ("retained_120s", "retained_30s"):
            if name in self.retained:
                return self.retained[name]
        return None


def suggestion_records(events: Iterable[dict[str, Any]]) -> list[SuggestionRecord]:
    """Fold the events into one record per shown suggestion, oldest first; outcomes of a
    suggestion whose `shown` event was dropped with an old segment are ignored."""
    records: dict[str, SuggestionRecord] = {}
    for e in events:
        kind, id = e.get("event"), str(e.get("id"))
        if kind == "shown":
            records[id] = SuggestionRecord(id, e)
            continue
        record = records.get(id)
        if record is None:
            continue
        if kind == "accepted":
            record.accepted.append(str(e.get("kind", "full")))
        elif kind == "typed_through":
            record.typed_chars = max(record.typed_chars, int(e.get("chars", 0)))
        elif kind == "superseded":
            record.superseded = True
        elif kind == "dismissed":
            record.dismissed = True
        elif kind == "typed":
            record.typed = str(e.get("text", ""))
        elif kind in ("retained_30s", "retained_120s"):
            record.retained[kind] = bool(e.get("kept"))
    return sorted(records.values(), key=lambda r: r.time)
