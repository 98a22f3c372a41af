"""The LSP handlers: LSP params in, plain values to the `Session`, LSP types out.

Each handler is small on purpose: the policy lives in `lsp_server.session`
(the session, documents, settings, typing-through) and is tested without a
server. `register` attaches the handlers to a `CodetailorServer`;
`lsp_server.lsp.serve` passes it to the server it builds.
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.capabilities import ServerCapabilitiesBuilder

# A runtime import: pygls reads the command handlers' type hints to convert their arguments.
from lsp_server.lsp import next_edit
from lsp_server.lsp.server import CodetailorServer
from lsp_server.methods import ACCEPTED, CURSOR, DISMISSED, STATUS
from lsp_server.session.documents import (
    Change,
    Position,
    Replacement,
    position_at,
    replacement,
    word_start,
)

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
    ls.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)(did_change_workspace_folders)
    ls.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())(
        inline_completion
    )
    ls.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(resolve_provider=False))(
        completion
    )
    ls.feature(CURSOR)(cursor)
    ls.feature(DISMISSED)(dismissed)
    ls.command(ACCEPTED)(accepted)
    ls.command(STATUS)(status)
    next_edit.register(ls)  # textDocument/copilotInlineEdit and its notifications


def initialize(ls: CodetailorServer, params: types.InitializeParams) -> None:
    options = params.initialization_options  # its authToken was checked by the lifecycle gate
    encoding = str(ServerCapabilitiesBuilder.choose_position_encoding(params.capabilities))
    folders = params.workspace_folders or []
    root = folders[0].uri if folders else params.root_uri
    client = params.client_info.name if params.client_info else None
    uris = [folder.uri for folder in folders] or ([root] if root else [])
    problems = ls.session.initialize(
        options, root, ENCODINGS.get(encoding, "utf-16"), client=client, folders=uris
    )
    for problem in problems:
        ls.report_once(problem)


def initialized(ls: CodetailorServer, params: types.InitializedParams) -> None:
    window = ls.client_capabilities.window
    ls.load_progress.start(bool(window and window.work_done_progress))
    ls.watch_adapters()


def did_open(ls: CodetailorServer, params: types.DidOpenTextDocumentParams) -> None:
    doc = params.text_document
    ls.session.open(doc.uri, doc.text, doc.version, doc.language_id)


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
    ls.session.change(params.text_document.uri, params.text_document.version, changes)


def did_close(ls: CodetailorServer, params: types.DidCloseTextDocumentParams) -> None:
    ls.session.close(params.text_document.uri)


def cursor(ls: CodetailorServer, params: Any) -> None:
    """`codetailor/cursor` {textDocument: {uri}, position}: warm the window there if new.

    Not LSP: LSP tells a server of edits, not of cursor moves; without this
    notification the server warms where documents are opened and edited.
    """
    try:
        uri = str(_field(_field(params, "textDocument"), "uri"))
        position = _field(params, "position")
        line, character = int(_field(position, "line")), int(_field(position, "character"))
    except (AttributeError, KeyError, TypeError, ValueError):
        return  # a malformed notification has no answer to carry an error
    ls.session.cursor(uri, line, character)


def _field(value: Any, name: str) -> Any:
    """A field of custom params, which pygls hands over as an object (or a dict)."""
    return value[name] if isinstance(value, dict) else getattr(value, name)


def did_change_configuration(
    ls: CodetailorServer, params: types.DidChangeConfigurationParams
) -> None:
    for problem in ls.session.configure(params.settings):
        ls.report_once(problem)


def did_change_workspace_folders(
    ls: CodetailorServer, params: types.DidChangeWorkspaceFoldersParams
) -> None:
    """Folders added or removed: each gets its own adapter, loaded in the background."""
    event = params.event
    ls.session.change_folders([f.uri for f in event.added], [f.uri for f in event.removed])


async def inline_completion(
    ls: CodetailorServer, params: types.InlineCompletionParams
) -> types.InlineCompletionList:
    position = params.position
    request = ls.session.request_at(params.text_document.uri, position.line, position.character)
    text, id = await ls.session.suggest(request) if request else ("", None)
    if not request or not text:  # a same-line next edit at the cursor, where there is one
        found = await next_edit.next_edit_item(ls, request) if request else None
        return types.InlineCompletionList(items=[found] if found else [])
    edit = replacement(request.text, request.offset, text)
    item = types.InlineCompletionItem(
        insert_text=edit.new_text,
        range=lsp_range(request.text, edit, ls.session.encoding),
        command=accepted_command("inline", id),
    )
    return types.InlineCompletionList(items=[item])


async def completion(ls: CodetailorServer, params: types.CompletionParams) -> types.CompletionList:
    """The same completion as one item, for editors without inline completion.

    Its edit replaces the word before the cursor with that word plus the
    completion, so the editor's own filtering by the typed word keeps it.
    """
    position = params.position
    request = ls.session.request_at(params.text_document.uri, position.line, position.character)
    text, id = await ls.session.suggest(request) if request else ("", None)
    if not request or not text:
        return types.CompletionList(is_incomplete=True, items=[])
    start = word_start(request.text, request.offset)
    a = position_at(request.text, start, ls.session.encoding)
    b = position_at(request.text, request.offset, ls.session.encoding)
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
        command=accepted_command("completion", id),
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


def dismissed(ls: CodetailorServer, params: Any) -> None:
    """`codetailor/dismissed` {id, reason?}: the user hid suggestion `id` without taking it
    (the id is the second argument of the item's command); logged, never sent anywhere."""
    try:
        id = _field(params, "id")
    except (AttributeError, KeyError, TypeError):
        return  # a malformed notification has no answer to carry an error
    reason = params.get("reason") if isinstance(params, dict) else getattr(params, "reason", None)
    ls.session.dismissed(id, reason)


def accepted_command(kind: str, id: str | None = None) -> types.Command:
    """The item's command: arguments `[kind, id]` (the id names it in the feedback log)."""
    arguments = [kind, id] if id else [kind]
    return types.Command(title="Codetailor: accepted", command=ACCEPTED, arguments=arguments)


def accepted(ls: CodetailorServer, *args: Any) -> None:
    """`codetailor.accepted [kind, id, part]`: counts an accepted completion and logs it
    under its id; `part` ("full", default, "word" or "line") is for editors that report
    partial accepts. Nothing leaves this machine."""
    kind, id, part = (list(args) + [None, None, "full"])[:3]
    ls.session.accepted(kind, id, part)


def status(ls: CodetailorServer, *args: Any) -> dict[str, Any]:
    return ls.session.status()
