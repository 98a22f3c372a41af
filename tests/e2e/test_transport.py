"""TCP: loopback unless a token is set, clients without the token refused, and a client
that vanishes mid-request leaves the server (and its loaded model) for the next one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.rawclient import REPO, RawClient, listening_port, server_command

LONG = {"maxTokens": 1024, "timeBudgetMs": 60000, "multiline": "never"}


def test_a_non_loopback_bind_needs_a_token():
    env = {k: v for k, v in os.environ.items() if k != "CODETAILOR_AUTH_TOKEN"}
    done = subprocess.run(
        server_command("--tcp", "0.0.0.0:0"), cwd=REPO, env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"--auth-token" in done.stderr and done.stdout == b""


@pytest.fixture
def tcp_server(endless_model_dir: Path):
    # Bound to all interfaces, so a token is required: it comes from the environment.
    server = RawClient.spawn(
        "--model",
        str(endless_model_dir),
        "--tcp",
        "0.0.0.0:0",
        env={"CODETAILOR_AUTH_TOKEN": "s3cret"},
    )
    yield server, listening_port(server)
    server.proc.terminate()
    server.close()


def test_tcp_refuses_clients_without_the_token_and_survives_disconnects(tcp_server):
    server, port = tcp_server
    intruder = RawClient.connect("127.0.0.1", port)
    reply = intruder.response(intruder.request_async("initialize", {"capabilities": {}}))
    assert reply["error"]["code"] == -32001
    assert "authToken" in reply["error"]["message"]
    assert intruder.wait_closed()  # the server hung up

    client = RawClient.connect("127.0.0.1", port)
    client.initialize({"authToken": "s3cret", **LONG})
    assert client.wait_ready()["state"] == "ready"
    client.open("file:///work/a.py", "x = ")
    client.request_async(
        "textDocument/inlineCompletion",
        {
            "textDocument": {"uri": "file:///work/a.py"},
            "position": {"line": 0, "character": 4},
            "context": {"triggerKind": 1},
        },
    )
    client.wait_generating()
    client.close()  # gone mid-request

    again = RawClient.connect("127.0.0.1", port)
    again.initialize({"authToken": "s3cret", "maxTokens": 2})
    assert again.wait_ready(timeout=10)["state"] == "ready"  # the model stayed loaded
    again.open("file:///work/a.py", "x = ")
    assert again.inline("file:///work/a.py", 0, 4)[0]["insertText"] == "aa"
    again.close()
    assert server.proc.poll() is None
