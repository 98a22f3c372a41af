"""`bench memory` on a real `codetailor serve` process: its memory after one completion."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from lsp_server.measure.server_memory import server_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_the_servers_memory_is_read_after_one_completion(tiny_model_dir: Path) -> None:
    report = asyncio.run(server_memory(str(tiny_model_dir), Path(__file__), settle_s=0.2))
    assert report["model"] == tiny_model_dir.name and report["device"] == "cpu"
    loaded, after = report["loaded_mb"], report["after_completion_mb"]
    for figures in (loaded, after):
        assert set(figures) == {"VmRSS", "VmHWM", "RssAnon", "RssFile"}
        assert figures["VmHWM"] >= figures["VmRSS"] > 0
    # The peak never falls, and the server (with torch) holds more than a bare interpreter.
    assert after["VmHWM"] >= loaded["VmHWM"] and after["VmRSS"] > 100
    assert report["first_completion_ms"] > 0
