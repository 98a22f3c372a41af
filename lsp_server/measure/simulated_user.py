"""`codetailor bench simulate`: a simulated user typing a repository's files through the server.

The user types whole lines of each file word by word from a line boundary, as
`bench latency`'s typing replay does, on a line opened for them (as when writing
new code: the untyped rest of the file starts on the next line), through a real
`codetailor serve` process, and asks for a completion after every word. A
suggestion is accepted when it matches what the file really says next: in full
when all of it does, else its longest start that matches and ends on a whole
word, if that is at least `min_chars` characters.
Accepting inserts that text (didChange) and runs the item's command, as an
editor does; anything else is ignored and the user types on.

The files are the repository's held-out or training split (the same split as
`finetune`). The acceptance rate is accepted / shown suggestions.

With `record=True` the server writes the feedback log, exactly as it does for
a person in an editor: the repository is its workspace, so the log is the
repository's; the client introduces itself as the simulated user, so the events
are labelled `source: "simulated"`; a partial take is reported to
`codetailor.accepted` as a "word" accept. The server runs with
`context: false`, so each event's prefix and suffix are all its prompt was
built from. Without it the server records nothing (`feedback: false`).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsp_server.completion.languages import language_for
from lsp_server.errors import CodetailorError
from lsp_server.feedback import SIMULATED_CLIENT
from lsp_server.measure.client import EditorClient, server_session
from lsp_server.measure.replay import MIN_CHARS, WORD, accepted_text, line_end
from lsp_server.repo.corpus import collect
from lsp_server.repo.files import split_files


@dataclass
class Simulation:
    """What the simulated user saw and took."""

    shown: int = 0
    accepted: int = 0
    full: int = 0
    requests: int = 0
    typed_chars: int = 0
    accepted_chars: int = 0
    files: list[str] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    empty: dict[str, int] = field(default_factory=dict)  # the server's empty answers, by reason

    def summary(self) -> dict[str, Any]:
        from lsp_server.measure.quality.metrics import percentile

        total = self.typed_chars + self.accepted_chars
        return {
            "shown": self.shown,
            "accepted": self.accepted,
            "accepted_full": self.full,
            "acceptance_rate": round(self.accepted / self.shown, 4) if self.shown else None,
            "accepted_char_share": round(self.accepted_chars / total, 4) if total else None,
            "requests": self.requests,
            "latency_ms_p50": round(percentile(self.latencies_ms, 50), 1),
            "empty_answers": {k: v for k, v in self.empty.items() if v},
            "files": self.files,
        }


@dataclass
class _Doc:
    uri: str
    path: str
    text: str
    version: int = 1


def split_sources(
    repo: Path, split: str, holdout: float, only: list[str] | None = None
) -> list[tuple[str, str]]:
    """(path, text) of the repository's held-out or training files, as `finetune` splits them;
    with `only`, just those of them (repository-relative paths)."""
    corpus = collect(repo)
    train, held = split_files([f.path for f in corpus.files], holdout)
    chosen = set(held if split == "heldout" else train)
    if only:
        outside = sorted(set(only) - chosen)
        if outside:
            raise CodetailorError(
                f"{', '.join(outside)}: not a file of {repo}'s {split} split; "
                f"choose from {', '.join(sorted(chosen))}"
            )
        chosen = set(only)
    return [(f.path, f.text) for f in corpus.files if f.path in chosen]


def _insert(client: EditorClient, doc: _Doc, offset: int, text: str) -> None:
    doc.version += 1
    client.insert(doc.uri, doc.version, doc.text, offset, text)
    doc.text = doc.text[:offset] + text + doc.text[offset:]


@dataclass
class UserSetup:
    """What the simulated user does, and whether the server logs it."""

    words_per_file: int = 80
    max_suggestions: int = 40
    min_chars: int = MIN_CHARS
    start: float = 0.3  # where in each file typing starts (0..1)
    record: bool = False  # the server writes the repository's feedback log
    dtype: str | None = None  # the server's --dtype (None: its default)


async def type_file(
    client: EditorClient,
    path: str,
    source: str,
    sim: Simulation,
    setup: UserSetup,
    n: int,
    root: Path | None = None,
) -> None:
    """Type one file (`path`, relative to the repository at `root`) from a line boundary,
    taking suggestions that match the file."""
    begin, end = typed_part(source, setup)
    where = (root / path) if root else Path(path)
    doc = _Doc(where.resolve().as_uri() + f"#{n}", path, document_at(source, begin, end))
    language = language_for(path).name
    client.open(doc.uri, doc.text, language)
    cursor = begin
    while cursor < end and sim.shown < setup.max_suggestions:
        answer = await client.complete(doc.uri, doc.text, cursor)
        suggestion, command = answer.text, answer.command
        sim.requests += 1
        sim.latencies_ms.append(answer.elapsed_ms)
        take = ""
        if suggestion.strip():
            sim.shown += 1
            take = accepted_text(suggestion, source[cursor:end], setup.min_chars)
        if take:
            sim.accepted += 1
            full = take == suggestion.rstrip()
            sim.full += full
            sim.accepted_chars += len(take)
            if command is not None:
                await client.execute(command.command, accept_arguments(command, full))
            _insert(client, doc, cursor, take)
            cursor += len(take)
            continue
        word = WORD.match(source, cursor, end)
        typed = word.group(0) if word else source[cursor:end]
        _insert(client, doc, cursor, typed)
        sim.typed_chars += len(typed)
        cursor += len(typed)
    client.close(doc.uri)


def typed_part(source: str, setup: UserSetup) -> tuple[int, int]:
    """(begin, end) of the part of `source` the user types: whole lines from `setup.start`,
    `setup.words_per_file` words and the rest of the last one's line."""
    begin = line_end(source, int(len(source) * setup.start))
    end = begin + sum(len(w) for w in WORD.findall(source[begin:])[: setup.words_per_file])
    return begin, end if end == begin or source[end - 1] == "\n" else line_end(source, end)


def document_at(source: str, cursor: int, end: int) -> str:
    """The document as the user has it with the cursor at `cursor` of the typed part (what
    they took of suggestions is the file's own text, so it is the same whatever they took).

    They type on a line opened for the part (as when writing new code): glued to the
    cursor, the untyped rest of the file would stand right of it at every request, and the
    server declines to complete in front of a line (`no_help`)."""
    return source[:cursor] + "\n" + source[end:]


def accept_arguments(command: Any, full: bool) -> list[Any]:
    """The item's command arguments (`[kind, id]`), with "word" appended for a partial take,
    as an editor that reports partial accepts sends them."""
    arguments = list(command.arguments or [])
    return arguments + ["word"] if not full and len(arguments) == 2 else arguments


async def simulate(
    files: list[tuple[str, str]],
    *,
    model: str,
    adapter: str | None,
    setup: UserSetup,
    max_tokens: int = 24,
    root: Path | None = None,
) -> Simulation:
    """Type `files` (paths relative to the repository at `root`) through a fresh server;
    stop after `setup.max_suggestions` shown."""
    sim = Simulation()
    # No snippets of other files: the log's prefix and suffix are then the whole prompt input.
    # No time budget either: on a busy CPU it would cut suggestions short at random, and the
    # same adapter would not give the same acceptance rate twice.
    options = {
        "maxTokens": max_tokens,
        "multiline": "never",
        "context": False,
        "timeBudgetMs": 60_000,
        "feedback": setup.record,
    }
    # The repository is the workspace either way (prompts show repository-relative paths);
    # the `feedback` setting alone decides whether the server logs.
    session = server_session(
        model, adapter, options, SIMULATED_CLIENT, root=root, dtype=setup.dtype
    )
    async with session as client:
        for n, (path, source) in enumerate(files):
            if sim.shown >= setup.max_suggestions:
                break
            sim.files.append(path)
            await type_file(client, path, source, sim, setup, n, root)
            print(f"simulate: {path}: {sim.accepted}/{sim.shown} accepted", file=sys.stderr)
        sim.empty = dict((await client.status()).get("emptyAnswers") or {})
    return sim


def run_simulation(
    repo: Path,
    *,
    split: str,
    model: str,
    adapter: str | None,
    setup: UserSetup,
    holdout: float = 0.1,
    max_tokens: int = 24,
    only: list[str] | None = None,
) -> dict[str, Any]:
    """The whole benchmark for one split (or `only` some of its files); the summary as a
    JSON-ready object."""
    files = split_sources(repo, split, holdout, only)
    sim = asyncio.run(
        simulate(files, model=model, adapter=adapter, setup=setup, max_tokens=max_tokens, root=repo)
    )
    return sim.summary() | {
        "split": split,
        "files": [path for path, _ in files],
        "model": model,
        "adapter": adapter,
        "words_per_file": setup.words_per_file,
        "min_chars": setup.min_chars,
        "recorded": setup.record,
        "dtype": setup.dtype,
    }
