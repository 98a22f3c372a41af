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
        ]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    for variant in ("ours", "naive"):
        assert report[variant]["requests"] == 5
        assert report[variant]["p50_ms"] > 0
        assert report[variant]["p95_ms"] >= report[variant]["p50_ms"]
    assert report["ours/naive"]["p50_ms"] == round(
        report["ours"]["p50_ms"] / report["naive"]["p50_ms"], 3
    )
    assert 0 <= report["ours"]["cached_token_share"] <= 1
    assert report["ours"]["model_runs"] + report["ours"]["typing_through_hits"] >= 5
    assert (out / "latency.json").is_file() and (out / "latency.md").is_file()
    assert (out / "latency.png").read_bytes().startswith(b"\x89PNG")


def test_bench_latency_refuses_a_binary_file(tmp_path: Path, capsys) -> None:
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"\x00\x01")
    assert main(["bench", "latency", str(blob)]) == 2
    assert "looks binary" in capsys.readouterr().err


def test_a_remote_engine_is_compared_with_the_local_one_without_loading_weights(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from lsp_server.measure import latency

    runs: list[tuple[str, str]] = []

    async def fake_ours(replays, model, adapter, max_tokens, engine="local", name="ours"):
        runs.append((engine, name))
        ms = [10.0, 20.0, 30.0] if engine == "local" else [15.0, 25.0, 45.0]
        return latency.VariantResult(name, ms)

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(latency, "run_ours", fake_ours)
    monkeypatch.setattr("lsp_server.model.loading.load_model", no_weights)
    source = tmp_path / "m.py"
    source.write_text(SOURCE)
    argv = ["bench", "latency", str(source), "--steps", "3", "--no-naive"]
    assert main([*argv, "--engine", "openai:http://127.0.0.1:9"]) == 0
    table = capsys.readouterr().out
    assert runs == [("openai:http://127.0.0.1:9", "ours"), ("local", "local")]
    assert "| ours/local (ratio) | | 1.25 |" in table
    assert main([*argv, "--engine", "vllm"]) == 2
    assert "--engine" in capsys.readouterr().err


def test_bench_scripts_receive_their_leading_options(capsys) -> None:
    import pytest

    with pytest.raises(SystemExit) as exited:
        main(["bench", "remote", "--model", "m", "--engine", "local"])
    assert exited.value.code == 2
    assert "--engine must be openai:http(s)://HOST:PORT" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["complete", "x.py:1:1", "--bogus"])
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
