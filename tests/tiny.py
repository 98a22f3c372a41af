"""Tiny models built in code for the tests: see lsp_server/measure/tiny_model.py, their one
home (the benchmarks' smoke runs build the same ones)."""

from __future__ import annotations

from lsp_server.measure.tiny_model import (
    CORPUS,
    FIM_TOKENS,
    SMOLLM2_TOKENS,
    build_model,
    build_tokenizer,
)

__all__ = ["CORPUS", "FIM_TOKENS", "SMOLLM2_TOKENS", "build_model", "build_tokenizer"]
