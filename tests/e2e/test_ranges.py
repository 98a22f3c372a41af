"""Every inline completion item says what it replaces: the word before the cursor.

VS Code takes an item without a range to replace the word before the cursor and
drops it when its text does not start with that word, so mid-word completions
never showed there. The server now sends the range from the word's start to the
cursor, with the word in the text. Driven with the capabilities of VS Code
(UTF-16 positions) and Neovim (UTF-8), on the tiny model that always says "a".
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from lsp_server.session.documents import Position, apply_change, offset_at, units
from tests.e2e.editor_client import start_editor_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

ENCODING = {"visual-studio-code": "utf-16", "neovim": "utf-8"}
COMPLETION = "aaaa"  # what the endless model says with maxTokens 4

# name: (text with "|" at the cursor, the word the item must replace)
CASES = {
    "mid-word": ("class Circle:\n    def area(self):\n        return da|\n", "da"),
    "mid-word after wide characters": ('label = "😋 café" + naïv|', "naïv"),
    "after a space": ("total = |", ""),
    "at the end of a line": ("import os\npath = os.|\nprint(path)\n", ""),
    "mid-word at the end of a line": ("def f(x):\n    retu|\n\ny = 1\n", "retu"),
    "closer right of the cursor": ("print(na|)\n", "na"),
}


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=["visual-studio-code", "neovim"]
)
async def client(request: pytest.FixtureRequest, endless_model_dir: Path):
    lsp = await start_editor_client(request.param, endless_model_dir)
    yield lsp
    await lsp.shutdown_session()
    await lsp.stop()


async def inline_at_cursor(client: LanguageClient, name: str, marked: str):
    """Open `marked` (without its "|") and ask for an inline completion at the "|"."""
    encoding = ENCODING[client.editor]
    offset = marked.index("|")
    text = marked.replace("|", "", 1)
    uri = f"file:///work/ranges/{name.replace(' ', '_')}.py"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=text
            )
        )
    )
    line = text.count("\n", 0, offset)
    character = units(text[text.rfind("\n", 0, offset) + 1 : offset], encoding)
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=line, character=character),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    return text, offset, Position(line, character), result


@pytest.mark.parametrize("name", CASES)
async def test_the_item_replaces_the_word_before_the_cursor(client: LanguageClient, name: str):
    marked, word = CASES[name]
    encoding = ENCODING[client.editor]
    text, offset, cursor, result = await inline_at_cursor(client, name, marked)
    (item,) = result.items
    assert item.range is not None, "every item carries the range it replaces"
    start, end = item.range.start, item.range.end
    assert (end.line, end.character) == cursor, "the range ends at the cursor"
    replaced = text[offset_at(text, start.line, start.character, encoding) : offset]
    assert replaced == word
    assert item.insert_text == word + COMPLETION  # starts with what it replaces
    # Accepting it gives the text with the completion at the cursor, the rest untouched.
    accepted = apply_change(
        text, item.insert_text, Position(start.line, start.character), cursor, encoding
    )
    assert accepted == text[:offset] + COMPLETION + text[offset:]
    assert item.command.command == "codetailor.accepted"
