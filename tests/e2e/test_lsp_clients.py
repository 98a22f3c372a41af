"""End to end with pytest-lsp: the real `serve` process, driven with the capabilities that
VS Code and Neovim send (UTF-16 and UTF-8 positions respectively)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.editor_client import start_editor_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

URI = "file:///work/clients.py"
LINE = 'label = "😋 café" + na'  # one non-BMP and one non-ASCII character before the cursor
EXPECTED_ENCODING = {"visual-studio-code": "utf-16", "neovim": "utf-8"}


def column(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode())
    return len(text.encode("utf-16-le")) // 2


@pytest_asyncio.fixture(
    scope="module", loop_scope="module", params=["visual-studio-code", "neovim"]
)
async def client(request: pytest.FixtureRequest, endless_model_dir: Path):
    lsp = await start_editor_client(request.param, endless_model_dir)
    lsp.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(
                uri=URI, language_id="python", version=1, text="import os\n" + LINE
            )
        )
    )
    yield lsp
    await lsp.shutdown_session()
    await lsp.stop()


async def test_initialize_advertises_the_contract(client: LanguageClient):
    caps = client.init_result.capabilities
    assert caps.inline_completion_provider is not None
    assert caps.completion_provider is not None
    assert caps.text_document_sync.change == types.TextDocumentSyncKind.Incremental
    assert caps.position_encoding == EXPECTED_ENCODING[client.editor]
    assert {"codetailor.accepted", "codetailor.status"} <= set(
        caps.execute_command_provider.commands
    )


async def test_model_loading_reported_progress(client: LanguageClient):
    (reports,) = client.progress_reports.values()
    assert isinstance(reports[0], types.WorkDoneProgressBegin)
    assert isinstance(reports[-1], types.WorkDoneProgressEnd)


async def test_inline_completion_in_the_negotiated_encoding(client: LanguageClient):
    col = column(LINE, EXPECTED_ENCODING[client.editor])
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=1, character=col),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Invoked
            ),
        )
    )
    (item,) = result.items
    assert item.insert_text == "naaaaa"  # the word before the cursor, then the completion
    assert item.range == types.Range(
        start=types.Position(line=1, character=col - 2), end=types.Position(line=1, character=col)
    )
    assert item.command.command == "codetailor.accepted"


async def test_completion_item_edits_the_word_before_the_cursor(client: LanguageClient):
    encoding = EXPECTED_ENCODING[client.editor]
    col = column(LINE, encoding)
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=1, character=col),
        )
    )
    (item,) = result.items
    assert item.text_edit.new_text == "naaaaa"
    assert item.text_edit.range.start == types.Position(line=1, character=col - 2)
    assert item.text_edit.range.end == types.Position(line=1, character=col)
    assert item.insert_text_format == types.InsertTextFormat.PlainText


async def test_typing_a_character_through_the_sync_protocol(client: LanguageClient):
    encoding = EXPECTED_ENCODING[client.editor]
    col = column(LINE, encoding)
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=URI, version=2),
            content_changes=[
                types.TextDocumentContentChangePartial(
                    range=types.Range(
                        start=types.Position(line=1, character=col),
                        end=types.Position(line=1, character=col),
                    ),
                    text="a",
                )
            ],
        )
    )
    result = await client.text_document_inline_completion_async(
        types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=URI),
            position=types.Position(line=1, character=col + 1),
            context=types.InlineCompletionContext(
                trigger_kind=types.InlineCompletionTriggerKind.Automatic
            ),
        )
    )
    # typed through: the word is one "a" longer, the completion one "a" shorter
    assert [i.insert_text for i in result.items] == ["naa" + "aaa"]
    assert result.items[0].range.start == types.Position(line=1, character=col - 2)
