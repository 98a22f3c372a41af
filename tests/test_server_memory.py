"""`bench memory`'s accounting: the process's memory from /proc, and a model's tensors by kind
with shared storage counted once."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lsp_server.measure.engine_speed import mid_line_cursor
from lsp_server.measure.server_memory import memory_mb, tensor_mb

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_memory_of_this_process_is_read_from_proc() -> None:
    figures = memory_mb()
    assert set(figures) == {"VmRSS", "VmHWM", "RssAnon", "RssFile"}
    assert figures["VmHWM"] >= figures["VmRSS"] > 0
    assert figures["RssAnon"] + figures["RssFile"] <= figures["VmRSS"] + 1


def test_tensors_are_counted_by_kind_and_shared_storage_once(tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    plain = tensor_mb(model)
    elements = sum(p.numel() for p in model.parameters())
    assert sum(plain.values()) == pytest.approx(elements * 4 / 2**20, abs=len(plain))
    model.lm_head.weight = model.model.embed_tokens.weight  # tied: one storage
    tied = tensor_mb(model)
    head = model.lm_head.weight.numel() * 4 / 2**20
    assert sum(tied.values()) == pytest.approx(sum(plain.values()) - head, abs=len(plain))
    assert all(kind.endswith("(float32)") for kind in tied)


def test_the_cursor_stands_mid_line_where_it_is_asked() -> None:
    text = "".join(f"line number {i}\n" for i in range(30))
    for place in (0.1, 2 / 3, 0.99):
        offset = mid_line_cursor(text, place)
        line_start = text.rfind("\n", 0, offset) + 1
        line_end = text.index("\n", offset)
        assert line_start < offset < line_end  # inside a line, not at either end
        assert line_start <= len(text) * place < line_end + 1  # the line `place` falls in
