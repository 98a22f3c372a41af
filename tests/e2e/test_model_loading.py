"""Model loading and the process's life: a failed load is reported once and the server
lives on; a new model loads from the settings; logs never touch stdout; a client that
vanishes mid-request ends a stdio server promptly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import spawn

URI = "file:///work/a.py"


@pytest.fixture(scope="module")
def log_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("logs") / "server.log"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, log_file: Path):
    missing = tmp_path_factory.mktemp("models") / "no-such-model"
    # Every byte on stdout is parsed as LSP frames: a stray log line would break the client.
    client = spawn(
        missing, "--log-file", str(log_file), "-v", options={"maxTokens": 3}, ready=False
    )
    client.wait_ready()
    yield client
    client.close()


def error_messages(client) -> list[str]:
    return [
        n["params"]["message"]
        for n in client.notifications
        if n["method"] == "window/showMessage" and n["params"]["type"] == 1
    ]


def test_a_failed_load_is_reported_once_and_requests_get_empty_answers(server, log_file):
    status = server.request("workspace/executeCommand", {"command": "codetailor.status"})
    assert status["state"] == "failed" and "does not exist" in status["error"]
    server.wait_for(lambda n: n["method"] == "window/showMessage")
    server.open(URI, "x = ")
    started = time.monotonic()
    assert server.inline(URI, 0, 4) == []
    assert server.inline(URI, 0, 4) == []
    assert time.monotonic() - started < 2.0  # no wait for the model
    assert len(error_messages(server)) == 1
    assert "no-such-model" in error_messages(server)[0]
    assert "no-such-model" in log_file.read_text()


def test_changing_the_model_setting_loads_it_in_the_background(server, endless_model_dir):
    server.notify(
        "workspace/didChangeConfiguration", {"settings": {"model": str(endless_model_dir)}}
    )
    assert server.wait_ready()["state"] == "ready"
    assert server.inline(URI, 0, 4)[0]["insertText"] == "aaa"
    assert len(error_messages(server)) == 1


def test_a_client_that_disconnects_mid_request_ends_a_stdio_server(server):
    server.notify(
        "workspace/didChangeConfiguration",
        {"settings": {"maxTokens": 1024, "timeBudgetMs": 60000, "multiline": "never"}},
    )
    # Another document: at URI the completion shown before would be served by typing-through.
    server.open("file:///work/b.py", "x = ")
    server.request_async(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": "file:///work/b.py"},
            "position": {"line": 0, "character": 4},
            "context": {"triggerKind": 1},
        },
    )
    server.wait_generating()  # the model is working on it
    started = time.monotonic()
    server.close()  # closes stdin, then waits for the process
    assert server.proc.returncode == 0
    assert time.monotonic() - started < 5
    assert not any("Traceback" in line for line in server.stderr_lines)
