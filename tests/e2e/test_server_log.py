"""The server's log reaches the editor as `window/logMessage`, with levels that mean
something and a "ready" line; stderr (which editors show as errors) carries no
progress bar and no log line the client already got."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from lsprotocol import types

from lsp_server.lsp.client_log import message_type
from tests.e2e.rawclient import RawClient

READY = re.compile(r"ready: \S+ on cpu in \d+\.\d s")


def test_levels_map_to_lsp_message_types():
    assert message_type(logging.CRITICAL) == types.MessageType.Error
    assert message_type(logging.ERROR) == types.MessageType.Error
    assert message_type(logging.WARNING) == types.MessageType.Warning
    assert message_type(logging.INFO) == types.MessageType.Info
    assert message_type(logging.DEBUG) == types.MessageType.Log


def log_messages(client: RawClient) -> list[tuple[int, str]]:
    return [
        (n["params"]["type"], n["params"]["message"])
        for n in list(client.notifications)
        if n["method"] == "window/logMessage"
    ]


def test_a_healthy_start_logs_ready_to_the_client_and_nothing_to_stderr(tiny_model_dir: Path):
    client = RawClient.spawn("--model", str(tiny_model_dir))
    try:
        # An invalid setting: reported once, and logged as a warning.
        client.initialize({"maxTokens": "many"})
        ready = client.wait_for(
            lambda n: (
                n["method"] == "window/logMessage"
                and READY.search(n["params"]["message"]) is not None
            ),
            timeout=120,
        )
        assert ready["params"]["type"] == types.MessageType.Info
        client.wait_for(
            lambda n: (
                n["method"] == "window/logMessage"
                and n["params"]["type"] == types.MessageType.Warning
                and "maxTokens" in n["params"]["message"]
            )
        )
        assert (
            client.request("workspace/executeCommand", {"command": "codetailor.status"})["state"]
            == "ready"
        )
        client.request("shutdown")
        client.notify("exit")
        assert client.proc.wait(timeout=30) == 0
    finally:
        client.close()
    stderr = "".join(client.stderr_lines)
    assert "%|" not in stderr, f"a progress bar on stderr:\n{stderr}"
    for _, message in log_messages(client):
        assert message.splitlines()[0] not in stderr, f"logged twice:\n{stderr}"
