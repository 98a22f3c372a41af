"""The simulated user: takes the matching whole words of a suggestion, records what it did."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from lsp_server.measure.simulated_user import Simulation, UserSetup, accepted_text, type_file
from lsp_server.session.feedback import FeedbackRecorder, read_events, suggestion_records


def test_a_suggestion_that_matches_the_file_is_taken_whole() -> None:
    assert accepted_text("return a + b\n", "return a + b\n\ndef f():") == "return a + b"


def test_only_the_matching_whole_words_are_taken() -> None:
    assert accepted_text("self.count += 2", "self.count += 1\n") == "self.count +="
    # A suggestion that stops inside a word of the file, or runs past it, loses that word.
    assert accepted_text("self.value", "self.values = []") == "self."
    assert accepted_text("self.values_x", "self.values = []") == "self."
    assert accepted_text("items.append(x)", "items.append(y)") == "items.append("


def test_too_short_or_wrong_suggestions_are_ignored() -> None:
    assert accepted_text("x", "x = 1") == ""
    assert accepted_text("foo()", "bar()") == ""
    assert accepted_text("", "anything") == ""
    assert accepted_text("ab c", "ab d", min_chars=2) == "ab"


class FakeClient:
    """An editor's view of a server that suggests the file's next line at every other
    request and something wrong otherwise; it keeps the document as the user edits it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.text = ""
        self.asked = 0
        self.commands: list[str] = []

    def text_document_did_open(self, params: Any) -> None:
        self.text = params.text_document.text

    def text_document_did_change(self, params: Any) -> None:
        from lsp_server.session.documents import offset_at

        (change,) = params.content_changes
        at = offset_at(self.text, change.range.start.line, change.range.start.character)
        self.text = self.text[:at] + change.text + self.text[at:]

    def text_document_did_close(self, params: Any) -> None:
        pass

    async def text_document_inline_completion_async(self, params: Any) -> Any:
        from lsprotocol import types

        from lsp_server.session.documents import offset_at

        self.asked += 1
        at = offset_at(self.text, params.position.line, params.position.character)
        # The source's text from this point: the document's prefix is the source's.
        truth = self.source[at:].split("\n", 1)[0]
        text = truth if self.asked % 2 else "wrong_guess()"
        command = types.Command(title="accepted", command="codetailor.accepted", arguments=["x"])
        return types.InlineCompletionList(
            items=[types.InlineCompletionItem(insert_text=text, command=command)]
        )

    async def workspace_execute_command_async(self, params: Any) -> None:
        self.commands.append(params.command)


def test_the_user_takes_what_matches_and_records_shown_and_outcomes(tmp_path: Path) -> None:
    source = "".join(f"result_{n} = compute_value({n}, scale={n * 2})\n" for n in range(40))
    client = FakeClient(source)
    recorder = FeedbackRecorder(tmp_path, clock=lambda: 1.0)
    sim = Simulation()
    setup = UserSetup(words_per_file=60, max_suggestions=10, start=0.2, recorder=recorder)
    asyncio.run(type_file(client, "pkg/calc.py", source, sim, setup, 0))
    assert sim.shown == 10 and sim.accepted == 5 and sim.full == 5
    assert client.commands == ["codetailor.accepted"] * 5
    # The document is the file with a gap where typing stopped: nothing but the file's own text.
    same = next(i for i, (a, b) in enumerate(zip(client.text, source, strict=False)) if a != b)
    assert source.endswith(client.text[same:]) and same > source.index("result_8 ")
    records = suggestion_records(read_events(tmp_path))
    assert len(records) == 10
    assert [r.was_accepted for r in records] == [True, False] * 5
    assert all(r.superseded for r in records if not r.was_accepted)
    assert records[0].shown["source"] == "simulated" and records[0].shown["language"] == "python"
