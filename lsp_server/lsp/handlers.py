"""The LSP handlers: LSP params in, plain values to `CodetailorServer`, LSP types out.

Each handler is small on purpose; the logic lives in pure modules (documents,
settings, typing_through) and in the server's completion path.
"""

from __future__ import annotations

import logging
from typing import Any

from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder

# A runtime import (server.py imports this module only inside a method): pygls reads
# the command handlers' type hints to convert their arguments.
from lsp_server.lsp.server import CodetailorServer
from lsp_server.session.documents import (
    Change,
    Documents,
    Position,
    Replacement,
    position_at,
    replacement,
    word_start,
)
from lsp_server.session.settings import parse_settings, unknown_keys

log = logging.getLogger("codetailor.handlers")

ACCEPTED = "codetailor.accepted"
STATUS = "codetailor.status"
ENCODINGS = {"utf-8": "utf-8", "utf-16": "utf-16", "utf-32": "utf-32"}
LABEL_CHARS = 60


def register(ls: CodetailorServer) -> None:
    """Attach every handler to `ls` (no module-level server object)."""
    ls.feature(types.INITIALIZE)(initialize)
    ls.feature(types.INITIALIZED)(initialized)
    ls.feature(types.TEXT_DOCUMENT_DID_OPEN)(did_open)
    ls.feature(types.TEXT_DOCUMENT_DID_CHANGE)(did_change)
    ls.feature(types.TEXT_DOCUMENT_DID_CLOSE)(did_close)
    ls.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)(did_change_configuration)
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(
        inline_completion
    )
    ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))(
        completion
    )
    ls.command(ACCEPTED)(accepted)
    ls.command(STATUS)(status)


def initialize(ls: CodetailorServer, params: types.InitializeParams) -> None:
    options = params.initialization_options
    ls.check_token(options)
    encoding = str(ServerCapabilitiesBuilder.choose_position_encoding(params.capabilities))
    ls.encoding = ENCODINGS.get(encoding, "utf-16")
    ls.documents = Documents(ls.encoding)
    settings, problems = parse_settings(options, ls.startup, ls.startup)
    if ignored := unknown_keys(options):
        log.info("ignoring unknown settings: %s", ", ".join(map(str, ignored)))
    ls.apply_settings(settings, problems)
    folders = params.workspace_folders or []
    root = folders[0].uri if folders else params.root_uri
    ls.repo_context.set_root(root, scan=ls.settings.context)


def initialized(ls: CodetailorServer, params: types.InitializedParams) -> None:
    window = ls.client_capabilities.window
    ls.progress.start(bool(window and window.work_done_progress))


def did_open(ls: CodetailorServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.documents.open(doc.uri, doc.text, doc.version, doc.language_id)
    ls.repo_context.opened(doc.uri)


def did_change(ls: CodetailorServer, params: types.DidChangeTextDocumentParams) -> None:
    changes = []
    for change in params.content_changes:
        if isinstance(change, types.TextDocumentContentChangePartial):
            start, end = change.range.start, change.range.end
            changes.append(
                Change(
                    change.text,
                    Position(start.line, start.character),
                    Position(end.line, end.character),
                )
            )
        else:
            changes.append(Change(change.text))
    uri = params.text_document.uri
    ls.cancel(uri)  # whatever it was computing is for text that no longer exists
    if ls.documents.change(uri, params.text_document.version, changes):
        ls.repo_context.changed(uri)
    else:
        ls.counts["unknown_document"] += 1


def did_close(ls: CodetailorServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.cancel(uri)
    ls.shown.forget(uri)
    ls.documents.close(uri)
    ls.repo_context.closed(uri)


def did_change_configuration(
    ls: CodetailorServer, params: types.DidChangeConfigurationParams
) -> None:
    settings, problems = parse_settings(params.settings, ls.settings, ls.startup)
    if ignored := unknown_keys(params.settings):
        log.info("ignoring unknown settings: %s", ", ".join(map(str, ignored)))
    ls.apply_settings(settings, problems)


async def inline_completion(
    ls: CodetailorServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    position = params.position
    request = ls.request_at(params.text_document.uri, position.line, position.character)
    text = await ls.complete(request) if request else ""
    if not request or not text:
        return types.InlineCompletionList(items=[])
    edit = replacement(request.text, request.offset, text)
    item = types.InlineCompletionItem(
        insert_text=edit.new_text,
        range=lsp_range(request.text, edit, ls.encoding),
        command=accepted_command("inline"),
    )
    return types.InlineCompletionList(items=[item])


async def completion(ls: CodetailorServer, params: types.CompletionParams) -> types.CompletionList:
    """The same completion as one item, for editors without inline completion.

    Its edit replaces the word before the cursor with that word plus the
    completion, so the editor's own filtering by the typed word keeps it.
    """
    position = params.position
    request = ls.request_at(params.text_document.uri, position.line, position.character)
    text = await ls.complete(request) if request else ""
    if not request or not text:
        return types.CompletionList(is_incomplete=True, items=[])
    start = word_start(request.text, request.offset)
    a = position_at(request.text, start, ls.encoding)
    b = position_at(request.text, request.offset, ls.encoding)
    edit_range = types.Range(
        start=types.Position(line=a.line, character=a.character),
        end=types.Position(line=b.line, character=b.character),
    )
    new_text = request.text[start : request.offset] + text
    label = new_text.split("\n", 1)[0].strip() or new_text.strip()
    item = types.CompletionItem(
        label=label[:LABEL_CHARS] + ("…" if len(label) > LABEL_CHARS else ""),
        kind=types.CompletionItemKind.Text,
        detail="codetailor",
        text_edit=types.TextEdit(range=edit_range, new_text=new_text),
        insert_text_format=types.InsertTextFormat.PlainText,
        filter_text=new_text,
        sort_text="0",
        command=accepted_command("completion"),
    )
    return types.CompletionList(is_incomplete=True, items=[item])


def lsp_range(text: str, edit: Replacement, encoding: str) -> types.Range:
    """The LSP range of `edit` in `text`, in the negotiated encoding."""
    a = position_at(text, edit.start, encoding)
    b = position_at(text, edit.end, encoding)
    return types.Range(
        start=types.Position(line=a.line, character=a.character),
        end=types.Position(line=b.line, character=b.character),
    )


def accepted_command(kind: str) -> types.Command:
    return types.Command(title="Codetailor: accepted", command=ACCEPTED, arguments=[kind])


def accepted(ls: CodetailorServer, *args: Any) -> None:
    """Counts an accepted completion; the counts never leave this machine."""
    ls.counts["accepted"] += 1
    if args and args[0] in ("inline", "completion"):
        ls.counts[f"accepted_{args[0]}"] += 1


def status(ls: CodetailorServer, *args: Any) -> dict[str, Any]:
    return ls.status()
