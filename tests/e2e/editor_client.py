"""A pytest-lsp client that introduces itself as a real editor (its capabilities), with
the server started on a model and ready."""

from __future__ import annotations

import asyncio
from pathlib import Path

from lsprotocol import types
from pytest_lsp import LanguageClient, client_capabilities
from pytest_lsp.client import make_test_lsp_client

from tests.e2e.rawclient import REPO, server_command

OPTIONS = {"codetailor": {"maxTokens": 4, "multiline": "never"}}


async def start_editor_client(editor: str, model_dir: Path) -> LanguageClient:
    """`codetailor serve --model MODEL_DIR` initialized by a client with `editor`'s
    capabilities (its `init_result` kept), once the model is loaded."""
    lsp = make_test_lsp_client()
    await lsp.start_io(*server_command("--model", str(model_dir)), cwd=REPO)
    lsp.editor = editor
    lsp.init_result = await lsp.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities(editor), initialization_options=OPTIONS
        )
    )
    for _ in range(600):
        status = await lsp.workspace_execute_command_async(
            types.ExecuteCommandParams(command="codetailor.status")
        )
        if status["state"] != "loading":
            break
        await asyncio.sleep(0.1)
    assert status["state"] == "ready", status
    return lsp
