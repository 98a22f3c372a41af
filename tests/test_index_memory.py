"""The workspace index's memory per byte of text (issue 28: ~540 MB for 22 MB, ~24 bytes
per byte). Measured with tracemalloc over generated code with a realistic vocabulary."""

from __future__ import annotations

import random
import tracemalloc
from collections.abc import Callable
from itertools import accumulate
from pathlib import Path

import pytest

from lsp_server.completion import retrieval
from lsp_server.completion.retrieval import ContextIndex
from lsp_server.index import WorkspaceScanner

TEXT_BYTES = 1_000_000


def generated_files(total: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    stems = ["get", "set", "make", "load", "parse", "run", "read", "user", "item", "node"]
    vocab = [f"{rng.choice(stems)}_{rng.randrange(40_000)}" for _ in range(30_000)]
    weights = list(accumulate(1 / (i + 1) for i in range(len(vocab))))  # Zipf-like
    files: list[tuple[str, str]] = []
    size = 0
    while size < total:
        lines = []
        for _ in range(rng.randrange(80, 400)):
            words = rng.choices(vocab, cum_weights=weights, k=rng.randrange(2, 7))
            lines.append("    " * rng.randrange(3) + f"{words[0]} = f({', '.join(words[1:])})")
        text = "\n".join(lines)
        files.append((f"pkg/mod_{len(files)}.py", text))
        size += len(text)
    return files


def held_bytes(fill: Callable[[ContextIndex], None]) -> tuple[ContextIndex, int]:
    index = ContextIndex()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fill(index)
        return index, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def test_a_scanned_workspace_costs_a_few_bytes_per_byte_of_text(tmp_path: Path) -> None:
    files = generated_files(TEXT_BYTES)
    for path, text in files:
        (tmp_path / path).parent.mkdir(exist_ok=True)
        (tmp_path / path).write_text(text)
    size = sum(len(text) for _, text in files)
    index, held = held_bytes(lambda index: WorkspaceScanner(index).scan(tmp_path, background=False))
    assert len(index) == len(files)
    assert held / size < 8, f"{held / size:.1f} bytes per byte of text"  # was 26
    assert index.query("x = " + files[3][1][:400], 404)  # still finds context


def test_documents_from_the_editor_cost_a_few_bytes_per_byte_of_text() -> None:
    files = generated_files(TEXT_BYTES // 2, seed=1)
    size = sum(len(text) for _, text in files)

    def fill(index: ContextIndex) -> None:
        for path, text in files:
            index.add_document(path, text)

    index, held = held_bytes(fill)
    assert held / size < 8, f"{held / size:.1f} bytes per byte of text"  # was 26


def test_dropped_documents_leave_the_postings_and_queries_skip_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retrieval, "_COMPACT_AFTER", 100)
    index = ContextIndex()
    index.add_document("a.py", "def load_settings(path):\n    return parse_settings(path)\n")
    index.add_document("b.py", "def load_settings(path):\n    return read_settings(path)\n")
    index.remove_document("a.py")
    found = index.query("settings = load_settings(path)\n", 31)
    assert [s.path for s in found] == ["b.py"]
    for i in range(5):  # past the compaction threshold: the ids go
        index.add_document(f"c{i}.py", "\n".join(f"load_settings_{j} = {j}" for j in range(300)))
        index.remove_document(f"c{i}.py")
    assert index._dead < 100
    lingering = {w for p in index._postings.values() for w in p if w not in index._windows}
    assert len(lingering) == index._dead  # only those dropped since the last compaction
