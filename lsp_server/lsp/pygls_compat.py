"""Every use of pygls' private API, in one place.

Checked against pygls 2.1.1 (pyproject pins `pygls>=2.1,<2.2`). When pygls
moves, this is the one module to read again; nothing else in Codetailor
touches an underscore name of pygls or overrides its builtin features:

- `JsonRPCProtocol._send_response`: answer a request with an error before (or
  instead of) pygls dispatching it (lifecycle errors; params that do not
  parse); and overridden, so that no error response carries a traceback (pygls
  puts one in an internal error's `data`) or an exception's text;
- `JsonRPCProtocol._request_futures`: the futures of requests still running,
  cancelled when a TCP client goes away;
- `JsonRPCProtocol._server`: the server a protocol belongs to;
- `pygls.protocol.json_rpc.RPCRequest`: how pygls tells a request from a
  notification;
- the `lsp_method` override of `initialize`, which adds the server's
  `experimental` capabilities (next edits) to what pygls builds;
- the `lsp_method` overrides of the document builtins (`didOpen`, `didChange`,
  `didClose`): pygls' own versions keep a copy of every document in its
  workspace (with `str.splitlines` line breaks, which LSP does not use); ours
  only pass the notification on to our handlers. A builtin is a generator that
  yields `(handler, args, kwargs)` for pygls to call.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lsprotocol import types
from pygls.exceptions import JsonRpcException, JsonRpcInternalError
from pygls.lsp.server import LanguageServer
from pygls.protocol import JsonRPCProtocol, LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import RPCRequest

Builtin = Iterator[tuple[Any, tuple[Any, ...], None]]


def send_error(protocol: JsonRPCProtocol, msg_id: Any, error: JsonRpcException) -> None:
    """Answer request `msg_id` with `error`, outside pygls' dispatch."""
    protocol._send_response(msg_id, error=error.to_response_error())


def cancel_running_requests(protocol: JsonRPCProtocol) -> None:
    """Cancel the futures of every request the protocol is still working on."""
    for future in list(protocol._request_futures.values()):
        future.cancel()


def server_of(protocol: JsonRPCProtocol) -> LanguageServer:
    """The server that `protocol` was created for."""
    server = protocol._server
    assert isinstance(server, LanguageServer)
    return server


def is_request(message: Any) -> bool:
    """True for a JSON-RPC request (it has an id and expects an answer)."""
    return isinstance(message, RPCRequest)


class PassThroughDocuments(LanguageServerProtocol):
    """pygls' protocol, except that the document builtins keep no copy of the text.

    `lsp_server.session.documents.Documents` keeps the text instead, with LSP's
    line breaks, which `str.splitlines` (used by pygls' workspace) does not follow.
    Error responses go out without `data`, and an internal error without its
    exception's text: the client learns that it failed, the log says why.
    """

    # The `experimental` server capabilities (pygls builds the standard ones from features).
    experimental: dict[str, Any] = {}

    @lsp_method(types.INITIALIZE)
    def lsp_initialize(self, params: types.InitializeParams) -> Any:
        result = yield from super().lsp_initialize(params)
        if self.experimental:
            result.capabilities.experimental = dict(self.experimental)
        return result

    def _send_response(
        self, msg_id: Any, result: Any | None = None, error: types.ResponseError | None = None
    ) -> None:
        if error is not None:
            message = error.message
            if error.code == JsonRpcInternalError.CODE:
                message = "codetailor: internal error (the server's log has the details)"
            error = types.ResponseError(code=error.code, message=message)
        super()._send_response(msg_id, result, error)

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Builtin:
        yield self.fm.features[types.TEXT_DOCUMENT_DID_OPEN], (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Builtin:
        yield self.fm.features[types.TEXT_DOCUMENT_DID_CHANGE], (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Builtin:
        yield self.fm.features[types.TEXT_DOCUMENT_DID_CLOSE], (params,), None
