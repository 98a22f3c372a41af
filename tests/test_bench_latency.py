"""The typing replay and the latency benchmark's driver, on the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

from lsp_server.cli import main
from lsp_server.measure.replay import typing_replay

SOURCE = "import os\n\n\ndef size(path):\n    return os.path.getsize(path)\n\n\nx = size('a')\n"


def test_replay_types_the_file_back_word_by_word() -> None:
    replay = typing_replay("m.py", SOURCE, start=0.3, max_steps=100)
    documents = replay.documents()
    assert documents[-1][0] == SOURCE  # typing every word restores the file
    assert replay.initial != SOURCE
    start = replay.steps[0].offset
    assert start == 0 or SOURCE[start - 1] == "\n"  # typing starts on a line boundary
    for (text, cursor), step in zip(documents, replay.steps, strict=True):
        assert text[:cursor].endswith(step.typed)
    assert len(typing_replay("m.py", SOURCE, start=0.3, max_steps=3).steps) == 3


def test_bench_latency_reports_every_variant(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    source = tmp_path / "m.py"
    source.write_text(SOURCE * 3)
    out = tmp_path / "out"
    code = main(
        [
            "bench",
            "latency",
            str(source),
            "--model",
            str(tiny_model_dir),
            "--steps",
            "5",
            "--max-tokens",
            "4",
            "--json",
            "--out",
            str(out),
            "--cold-places",
            "2",
            "--baseline-tree",
            str(Path(__file__).parent.parent),  # this checkout, as its own "before"
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for variant in ("ours", "before", "naive"):
        assert report[variant]["requests"] == 5
        assert report[variant]["p50_ms"] > 0
        assert report[variant]["p95_ms"] >= report[variant]["p50_ms"]
    assert report["ours/naive"]["p50_ms"] == round(
        report["ours"]["p50_ms"] / report["naive"]["p50_ms"], 3
    )
    assert 0 <= report["ours"]["cached_token_share"] <= 1
    assert report["ours"]["model_runs"] + report["ours"]["typing_through_hits"] >= 5
    for variant in ("ours", "naive"):
        assert report[variant]["tokens_per_forward"] >= (1.0 if variant == "naive" else 0)
        assert report[variant]["decode_ms_per_token"] >= 0
    cold = report["cold_open"]
    assert cold["ours"]["requests"] == cold["naive"]["requests"] == report["setup"]["cold_places"]
    assert cold["ours"]["requests"] > 0
    assert 0 <= cold["ours"]["non_empty_share"] <= 1
    assert "ours/naive" in cold and "ours/before" in report
    assert (out / "latency.json").is_file() and (out / "latency.md").is_file()
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")


def test_bench_latency_refuses_a_binary_file(tmp_path: Path, capsys) -> None:
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"\x00\x01")
    assert main(["bench", "latency", str(blob)]) == 2
    assert "looks binary" in capsys.readouterr().err
