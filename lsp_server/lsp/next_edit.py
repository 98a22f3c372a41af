"""The next-edit handlers, as the Copilot language server names them (its README, "Next
Edit Suggestions"): LSP-shaped params in, plain values to `Session.next_edits`, JSON out.

- `textDocument/copilotInlineEdit` `{textDocument: {uri, version}, position}` ->
  `{edits: [{text, range, textDocument: {uri, version}, command}]}`; `{edits: []}`
  for nothing, for a document that moved past `version`, and for a stopped request.
  Params that are not of this shape get an InvalidParams error.
- `textDocument/didShowInlineEdit` `{item: <an edit>}`: the editor drew it.
- `codetailor.acceptedNextEdit` `[id]` (each edit's command), also a notification
  `{id}`: the editor applied it.

Ranges are in the negotiated position encoding. `inline_completion_item` offers a
same-line next edit that contains the cursor as an ordinary inline completion item.
"""

from __future__ import annotations

from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams

from lsp_server.lsp.server import CodetailorServer
from lsp_server.methods import ACCEPTED_NEXT_EDIT, DID_SHOW_INLINE_EDIT, INLINE_EDIT
from lsp_server.session.documents import position_at
from lsp_server.session.jobs import Request
from lsp_server.session.next_edits import ShownEdit


def register(ls: CodetailorServer) -> None:
    ls.feature(INLINE_EDIT)(inline_edit)
    ls.feature(DID_SHOW_INLINE_EDIT)(did_show_inline_edit)
    ls.feature(ACCEPTED_NEXT_EDIT)(accepted_notification)
    ls.command(ACCEPTED_NEXT_EDIT)(accepted)


def _field(value: Any, name: str) -> Any:
    """A field of custom params, which pygls hands over as an object (or a dict)."""
    return value[name] if isinstance(value, dict) else getattr(value, name)


def _request(params: Any) -> tuple[str, int | None, int, int]:
    """(uri, version, line, character) of copilotInlineEdit params; InvalidParams if not."""
    try:
        document, position = _field(params, "textDocument"), _field(params, "position")
        uri = _field(document, "uri")
        version = (
            document.get("version")
            if isinstance(document, dict)
            else getattr(document, "version", None)
        )
        line, character = _field(position, "line"), _field(position, "character")
    except (AttributeError, KeyError, TypeError) as exc:
        raise JsonRpcInvalidParams(f"{INLINE_EDIT}: expected {{textDocument, position}}") from exc
    numbers = (line, character) + (() if version is None else (version,))
    if not isinstance(uri, str) or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers
    ):
        raise JsonRpcInvalidParams(f"{INLINE_EDIT}: uri, version, line, character malformed")
    return uri, version, line, character


async def inline_edit(ls: CodetailorServer, params: Any) -> dict[str, Any]:
    """`textDocument/copilotInlineEdit`: the next edit near the position, or none."""
    uri, version, line, character = _request(params)
    shown = await ls.session.next_edits.suggest(uri, version, line, character)
    if shown is None:
        return {"edits": []}
    return {"edits": [edit_json(shown, ls.session.encoding)]}


def edit_range(shown: ShownEdit, encoding: str) -> types.Range:
    a = position_at(shown.text_at, shown.start, encoding)
    b = position_at(shown.text_at, shown.end, encoding)
    return types.Range(
        start=types.Position(line=a.line, character=a.character),
        end=types.Position(line=b.line, character=b.character),
    )


def edit_json(shown: ShownEdit, encoding: str) -> dict[str, Any]:
    """One edit of the answer, as the Copilot language server spells it."""
    r = edit_range(shown, encoding)
    return {
        "text": shown.text,
        "range": {
            "start": {"line": r.start.line, "character": r.start.character},
            "end": {"line": r.end.line, "character": r.end.character},
        },
        "textDocument": {"uri": shown.uri, "version": shown.version},
        "command": {
            "title": "Codetailor: accepted next edit",
            "command": ACCEPTED_NEXT_EDIT,
            "arguments": [shown.id] if shown.id else [],
        },
    }


def _edit_id(edit: Any) -> Any:
    """The id in an edit's command arguments (None when there is none)."""
    try:
        arguments = _field(_field(edit, "command"), "arguments") or []
    except (AttributeError, KeyError, TypeError):
        return None
    return arguments[0] if arguments else None


def did_show_inline_edit(ls: CodetailorServer, params: Any) -> None:
    """`textDocument/didShowInlineEdit` `{item}`: the editor drew the edit."""
    try:
        item = _field(params, "item")
    except (AttributeError, KeyError, TypeError):
        item = params
    ls.session.next_edits.shown_by_editor(_edit_id(item))


def accepted(ls: CodetailorServer, *args: Any) -> None:
    """`codetailor.acceptedNextEdit [id]`: the editor applied next edit `id`."""
    ls.session.next_edits.accepted(args[0] if args else None)


def accepted_notification(ls: CodetailorServer, params: Any) -> None:
    """The same, as a notification: `{id}` (or `[id]`)."""
    if isinstance(params, list | tuple):
        ls.session.next_edits.accepted(params[0] if params else None)
        return
    try:
        id = _field(params, "id")
    except (AttributeError, KeyError, TypeError):
        id = None
    ls.session.next_edits.accepted(id)


async def next_edit_item(
    ls: CodetailorServer, request: Request
) -> types.InlineCompletionItem | None:
    """The next edit near a completion request's cursor as an inline completion item,
    where it is one (see `inline_completion_item`), for editors that draw only inline
    completions; asked when the completion was empty, the document is unchanged and no
    newer completion request for it runs (a superseded request answers at once), unless
    the client draws next edits itself (`drawsNextEdits`). A newer completion request
    for the document stops it (`NextEdits.cancel_fallback`)."""
    session = ls.session
    doc = session.documents.get(request.uri)
    if not session.settings.next_edit or session.draws_next_edits:
        return None
    if doc is None or doc.revision != request.revision:
        return None
    if request.uri in session.inflight:  # a newer request took over: this one is done
        return None
    encoding = ls.session.encoding
    at = position_at(request.text, request.offset, encoding)
    next_edits = ls.session.next_edits
    shown = await next_edits.suggest(request.uri, None, at.line, at.character, fallback=True)
    return inline_completion_item(shown, request.offset, encoding) if shown else None


def inline_completion_item(
    shown: ShownEdit, offset: int, encoding: str
) -> types.InlineCompletionItem | None:
    """A next edit on one line whose range holds the cursor (at `offset`), as an LSP 3.18
    inline completion item (its text replaces its range); None for any other edit."""
    if not shown.fits_inline(offset):
        return None
    command = types.Command(
        title="Codetailor: accepted next edit",
        command=ACCEPTED_NEXT_EDIT,
        arguments=[shown.id] if shown.id else [],
    )
    return types.InlineCompletionItem(
        insert_text=shown.text, range=edit_range(shown, encoding), command=command
    )
