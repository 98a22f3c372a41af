"""`bench memory` on a real `codetailor serve` process: its memory after one completion."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from lsp_server.measure.server_memory import beside, server_memory

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


def test_beside_it_torchs_floor_is_read_and_llama_cpp_needs_a_gguf(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    ours = {"VmRSS": 500}
    report = beside(str(tiny_model_dir), Path(__file__), ours, tmp_path)
    floor = report["torch_only"]["after_import_mb"]
    assert floor["VmHWM"] >= floor["VmRSS"] > 50  # a Python with torch imported, nothing else
    assert report["llama_cpp"] == "not run: the model is no GGUF file"
    assert "ours_over_llama_cpp" not in report


def test_a_gguf_llama_cpp_cannot_load_is_said_in_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(60))
    report = beside(str(broken), Path(__file__), {"VmRSS": 500}, tmp_path)
    said = report["llama_cpp"]
    # Where llama-cpp-python is installed it fails on the file; elsewhere it is not run.
    assert said.startswith(("failed: ", "not run: llama-cpp-python")) and "\n" not in said
