"""The benchmarks' one LSP client: `codetailor serve` in a subprocess, driven as editors drive it.

`EditorClient` speaks the editor's side of the protocol over pygls'
`LanguageClient` (or a test's stand-in with the same methods): open, type
(didChange), report the cursor, ask for an inline completion, run a command,
read `codetailor.status`. Offsets in the document are turned into LSP
positions by `lsp_server.session.documents` (UTF-16, as the server negotiates
with a client that names no encoding). `ServerProcess` is that client on the
stdio of a server it starts; `server_session` starts one with its model loaded.

The only module of `measure/` that speaks LSP. pygls and lsprotocol are
imported when a client is used, so the benchmarks' command line and pure
helpers load without them.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsp_server.methods import CURSOR, STATUS
from lsp_server.session.documents import position_at


@dataclass(frozen=True)
class Answer:
    """An inline completion request's answer: the first item's text ("" for none), its
    command (None for none), and the client's round trip."""

    text: str
    command: Any
    elapsed_ms: float


def serve_command(
    model: str, *, adapter: str | None = None, dtype: str | None = None, engine: str = "local"
) -> list[str]:
    """The command line of `codetailor serve` on stdio with these options."""
    command = [sys.executable, "-m", "lsp_server.cli", "serve", "--model", model]
    if adapter:
        command += ["--adapter", adapter]
    if dtype:
        command += ["--dtype", dtype]
    if engine != "local":
        command += ["--engine", engine]
    return command


def _position(text: str, offset: int) -> Any:
    """The LSP position of `offset` in `text` (UTF-16)."""
    from lsprotocol import types

    where = position_at(text, offset)
    return types.Position(line=where.line, character=where.character)


class EditorClient:
    """An editor's side of LSP, over a pygls `LanguageClient` (`lsp`)."""

    def __init__(self, lsp: Any) -> None:
        self.lsp = lsp

    def open(self, uri: str, text: str, language_id: str = "python") -> None:
        from lsprotocol import types

        item = types.TextDocumentItem(uri=uri, language_id=language_id, version=1, text=text)
        self.lsp.text_document_did_open(types.DidOpenTextDocumentParams(text_document=item))

    def insert(self, uri: str, version: int, text: str, offset: int, typed: str) -> None:
        """didChange: `typed` inserted at `offset` of `text` (the document before it), which
        becomes `version`."""
        from lsprotocol import types

        where = _position(text, offset)
        change = types.TextDocumentContentChangePartial(
            range=types.Range(start=where, end=where), text=typed
        )
        self.lsp.text_document_did_change(
            types.DidChangeTextDocumentParams(
                text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
                content_changes=[change],
            )
        )

    def cursor(self, uri: str, text: str, offset: int) -> None:
        """`codetailor/cursor`: the editor's cursor rests at `offset`."""
        where = position_at(text, offset)
        position = {"line": where.line, "character": where.character}
        self.lsp.protocol.notify(CURSOR, {"textDocument": {"uri": uri}, "position": position})

    def close(self, uri: str) -> None:
        from lsprotocol import types

        document = types.TextDocumentIdentifier(uri=uri)
        self.lsp.text_document_did_close(types.DidCloseTextDocumentParams(document))

    async def complete(self, uri: str, text: str, offset: int, *, invoked: bool = False) -> Answer:
        """textDocument/inlineCompletion at `offset` of `text`, triggered automatically (as
        while typing) or, with `invoked`, by the user."""
        from lsprotocol import types

        kind = types.InlineCompletionTriggerKind
        params = types.InlineCompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=_position(text, offset),
            context=types.InlineCompletionContext(
                trigger_kind=kind.Invoked if invoked else kind.Automatic
            ),
        )
        started = time.perf_counter()
        answer = await self.lsp.text_document_inline_completion_async(params)
        elapsed = (time.perf_counter() - started) * 1000
        items: Any = getattr(answer, "items", answer) or []
        if not items:
            return Answer("", None, elapsed)
        first = items[0].insert_text
        return Answer(first if isinstance(first, str) else first.value, items[0].command, elapsed)

    async def execute(self, command: str, arguments: list[Any] | None = None) -> Any:
        """workspace/executeCommand; the server's answer."""
        from lsprotocol import types

        params = types.ExecuteCommandParams(command=command, arguments=arguments)
        return await self.lsp.workspace_execute_command_async(params)

    async def status(self) -> dict[str, Any]:
        """`codetailor.status` ({} if the answer is not an object)."""
        answer = await self.execute(STATUS)
        return answer if isinstance(answer, dict) else {}


class ServerProcess(EditorClient):
    """An `EditorClient` on the stdio of a server it starts (`command`, e.g. `serve_command`),
    introducing itself as `client_name`."""

    def __init__(
        self,
        command: list[str],
        *,
        client_name: str = "codetailor-bench",
        cwd: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        from pygls.lsp.client import LanguageClient

        super().__init__(LanguageClient(client_name, "1"))
        self.command, self.client_name = command, client_name
        self.cwd, self.env = cwd, env

    async def start(self, options: dict[str, Any], root: Path | None = None) -> None:
        """Start the server, initialize it with `options` in the workspace `root` (None: no
        workspace), and wait until its model is loaded."""
        from lsprotocol import types

        await self.lsp.start_io(*self.command, env=self.env, cwd=self.cwd)
        await self.lsp.initialize_async(
            types.InitializeParams(
                capabilities=types.ClientCapabilities(),
                initialization_options=options,
                client_info=types.ClientInfo(name=self.client_name),
                root_uri=root.resolve().as_uri() if root else None,
            )
        )
        self.lsp.initialized(types.InitializedParams())
        while (state := await self.status())["state"] == "loading":
            await asyncio.sleep(0.2)
        if state["state"] != "ready":
            raise RuntimeError(f"the server could not load the model: {state.get('error')}")

    @property
    def pid(self) -> int | None:
        """The server process's id, once started (pygls keeps the process as `_server`)."""
        process = getattr(self.lsp, "_server", None)
        return getattr(process, "pid", None)

    async def stop(self) -> None:
        """Shut the server down and end the process."""
        try:
            await self.lsp.shutdown_async(None)
            self.lsp.exit(None)
        finally:
            await self.lsp.stop()


@asynccontextmanager
async def server_session(
    model: str,
    adapter: str | None,
    options: dict[str, Any],
    name: str = "codetailor-bench",
    engine: str = "local",
    root: Path | None = None,
    dtype: str | None = None,
) -> AsyncIterator[ServerProcess]:
    """`codetailor serve` in a subprocess, initialized with `options` and its model loaded.
    The client introduces itself as `name`, in the workspace `root` (None: no workspace)."""
    command = serve_command(model, adapter=adapter, dtype=dtype, engine=engine)
    server = ServerProcess(command, client_name=name)
    try:
        await server.start(options, root)
        yield server
    finally:
        await server.stop()
