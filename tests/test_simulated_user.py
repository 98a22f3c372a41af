"""The simulated user: takes the matching whole words of a suggestion, and tells the
server what it took through the item's command (the server writes the feedback log)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.measure.client import EditorClient
from lsp_server.measure.replay import accepted_text
from lsp_server.measure.simulated_user import (
    Simulation,
    UserSetup,
    accept_arguments,
    split_sources,
    type_file,
)
from tests.fixtures.clients import FakeClient


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


def test_the_user_takes_what_matches_and_runs_the_items_command() -> None:
    source = "".join(f"result_{n} = compute_value({n}, scale={n * 2})\n" for n in range(40))
    client = FakeClient(source)
    sim = Simulation()
    setup = UserSetup(words_per_file=60, max_suggestions=10, start=0.2)
    asyncio.run(type_file(EditorClient(client), "pkg/calc.py", source, sim, setup, 0))
    assert sim.shown == 10 and sim.accepted == 5 and sim.full == 5
    # Each accepted item's own command, with its own arguments (the feedback id among them).
    assert client.commands == [
        ("codetailor.accepted", ["inline", f"id{n}"]) for n in range(1, 11, 2)
    ]
    # The document is the file with a gap where typing stopped: nothing but the file's own text.
    same = next(i for i, (a, b) in enumerate(zip(client.text, source, strict=False)) if a != b)
    assert source.endswith(client.text[same:]) and same > source.index("result_8 ")


def test_a_partial_take_is_reported_as_a_word_accept() -> None:
    from lsprotocol import types

    command = types.Command(title="t", command="codetailor.accepted", arguments=["inline", "i"])
    assert accept_arguments(command, full=True) == ["inline", "i"]
    assert accept_arguments(command, full=False) == ["inline", "i", "word"]
    old = types.Command(title="t", command="codetailor.accepted", arguments=["inline"])
    assert accept_arguments(old, full=False) == ["inline"]


class SuffixWatcher(FakeClient):
    """A FakeClient that notes, at every request, what stands right of the cursor on its line."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.rests: list[str] = []

    async def text_document_inline_completion_async(self, params: Any) -> Any:
        from lsp_server.session.documents import offset_at

        at = offset_at(self.text, params.position.line, params.position.character)
        self.rests.append(self.text[at:].split("\n", 1)[0])
        return await super().text_document_inline_completion_async(params)


def test_the_user_types_on_a_line_of_its_own_not_in_front_of_the_untyped_rest() -> None:
    # Typing stops before an indented line: were the untyped rest glued to the cursor, every
    # request would have that line right of the cursor, and the server, rightly, declines
    # to complete in front of so much text (`no_help`): the file would give no suggestion.
    source = "".join(f"def f{n}(x):\n    return compute_value(x, scale={n})\n" for n in range(30))
    client = SuffixWatcher(source)
    setup = UserSetup(words_per_file=9, max_suggestions=100, start=0.3)
    asyncio.run(type_file(EditorClient(client), "pkg/calc.py", source, Simulation(), setup, 0))
    assert client.rests and all(rest == "" for rest in client.rests)


def test_only_types_the_named_files_of_the_split_and_names_the_choices_otherwise(
    tmp_path: Any,
) -> None:
    for name in ("alpha", "beta", "gamma", "delta"):
        (tmp_path / f"{name}.py").write_text(f"def {name}():\n    return 1\n")
    train = [path for path, _ in split_sources(tmp_path, "train", 0.3)]
    held = [path for path, _ in split_sources(tmp_path, "heldout", 0.3)]
    assert train and held and not set(train) & set(held)
    assert split_sources(tmp_path, "train", 0.3, [train[0]]) == [
        (train[0], (tmp_path / train[0]).read_text())
    ]
    with pytest.raises(CodetailorError, match=f"{held[0]}: not a file of .* train split"):
        split_sources(tmp_path, "train", 0.3, [held[0]])
