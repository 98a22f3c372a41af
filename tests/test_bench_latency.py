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


def test_the_replay_types_at_the_end_of_a_line() -> None:
    """Text right of the cursor on its line makes the server decline (`no_help`): the
    rest of the last typed line is not in the document, so every request can be answered."""
    for steps in range(1, 8):
        replay = typing_replay("m.py", SOURCE, start=0.3, max_steps=steps)
        for text, cursor in replay.documents():
            assert text[cursor:].split("\n", 1)[0] == ""
        text, cursor = replay.documents()[-1]
        assert SOURCE.startswith(text[:cursor])
        assert SOURCE.endswith(text[cursor:])


def test_the_truth_at_each_step_is_the_file_from_the_cursor_on() -> None:
    for steps in (1, 3, 100):
        replay = typing_replay("m.py", SOURCE, start=0.3, max_steps=steps)
        truths = replay.truths()
        assert len(truths) == len(replay.steps)
        for (text, cursor), truth in zip(replay.documents(), truths, strict=True):
            assert SOURCE.startswith(text[:cursor]) and truth == SOURCE[cursor:]


def test_each_server_is_asked_right_after_its_own_edits() -> None:
    """Sent to every server before the first request, the edits would start the later
    servers' warming during the earlier ones' requests: a head start in cache reuse."""
    import asyncio

    from lsp_server.measure import latency
    from lsp_server.measure.client import Answer

    events: list[tuple[str, str]] = []

    class Fake:
        def __init__(self, name: str) -> None:
            self.name, self.result = name, latency.VariantResult(name)
            self.counts, self.answered = latency._EngineCounts(), 0
            self.requests, self.last_status = [], {}

        async def start(self, options) -> None: ...
        async def stop(self) -> None: ...
        async def status(self) -> dict:
            return {}

        def open(self, uri, text) -> None:
            events.append((self.name, "open"))

        def insert(self, uri, version, text, offset, typed) -> None:
            events.append((self.name, "insert"))

        async def complete(self, uri, text, cursor):
            events.append((self.name, "complete"))
            return Answer("", None, 1.0)

    replay = typing_replay("m.py", SOURCE, start=0.3, max_steps=2)
    asyncio.run(latency.run_typing([replay], [Fake("ours"), Fake("before")], {}))
    assert events == [
        ("ours", "open"), ("ours", "insert"), ("ours", "complete"),
        ("before", "open"), ("before", "insert"), ("before", "complete"),
        ("ours", "insert"), ("ours", "complete"),
        ("before", "insert"), ("before", "complete"),
    ]  # fmt: skip

    # With a typist's pause, each answer is followed by one before the next word.
    events.clear()
    real_sleep = asyncio.sleep

    async def pause(seconds: float) -> None:
        events.append(("pause", str(seconds)))
        await real_sleep(0)

    latency_sleep = latency.asyncio.sleep
    latency.asyncio.sleep = pause  # type: ignore[assignment]
    try:
        asyncio.run(latency.run_typing([replay], [Fake("ours")], {}, None, 16, 0.25))
    finally:
        latency.asyncio.sleep = latency_sleep  # type: ignore[assignment]
    assert events == [
        ("ours", "open"), ("ours", "insert"), ("ours", "complete"), ("pause", "0.25"),
        ("ours", "insert"), ("ours", "complete"), ("pause", "0.25"),
    ]  # fmt: skip


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
    tail = report["ours"]["tail"]  # what each request waited for, and why any was empty
    assert sum(tail["causes"].values()) == 5 and "no_help" not in tail["empty_answers"]
    assert tail["slow_tenth"] and report["setup"]["client"].startswith("plugin")
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


def test_cold_places_cut_the_line_after_its_first_word_and_type_one_key() -> None:
    from lsp_server.measure.latency import cold_places, interleave

    places = cold_places(Path("m.py"), SOURCE, 2)
    assert places
    for place in places:
        line_start = place.text.rfind("\n", 0, place.cursor) + 1
        line = place.text[line_start:].split("\n", 1)[0]
        original = next(li for li in SOURCE.split("\n") if li.startswith(line))
        assert len(line) < len(original)  # the rest of the line is cut off...
        assert place.text[place.cursor :] == SOURCE[SOURCE.index(original) + len(original) :]
        assert line[:-1].endswith(" ") and place.text[place.cursor - 1] != " "  # ...a key typed
        assert place.opened == place.text[: place.cursor - 1] + place.text[place.cursor :]
    a, b = cold_places(Path("a.py"), SOURCE, 2), cold_places(Path("b.py"), SOURCE * 2, 1)
    assert interleave([a, b]) == [a[0], b[0], a[1]]


def test_cold_open_asks_after_the_cursor_and_at_once(
    tmp_path: Path, tiny_model_dir: Path, capsys
) -> None:
    source = tmp_path / "m.py"
    source.write_text(SOURCE * 3)
    argv = ["bench", "latency", str(source), "--model", str(tiny_model_dir), "--steps", "0"]
    argv += ["--no-naive", "--cold-places", "2", "--cold-at-once", "--cold-pause-ms", "0"]
    assert main([*argv, "--dtype", "float32", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert "ours" not in report  # no typing replay
    assert report["setup"]["dtype"] == "float32"
    cold = report["cold_open"]
    assert cold["ours"]["request"] == "cursor" and cold["ours-at-once"]["request"] == "at-once"
    for variant in ("ours", "ours-at-once"):
        assert cold[variant]["requests"] == 2
        assert 0 <= cold[variant]["non_empty_share"] <= 1
        assert isinstance(cold[variant]["empty_reasons"], dict)
    assert cold["ours"]["cursor_reports"] == 2 and cold["ours-at-once"]["cursor_reports"] == 0


def test_bench_latency_refuses_a_binary_file(tmp_path: Path, capsys) -> None:
    blob = tmp_path / "b.bin"
    blob.write_bytes(b"\x00\x01")
    assert main(["bench", "latency", str(blob)]) == 2
    assert "looks binary" in capsys.readouterr().err


def test_a_remote_engine_is_compared_with_the_local_one_without_loading_weights(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from lsp_server.measure import latency

    runs: list[list[tuple[str, str]]] = []

    def engine_of(server) -> str:
        command = server.command
        return command[command.index("--engine") + 1] if "--engine" in command else "local"

    async def fake_typing(replays, servers, options, naive=None, max_tokens=16, pause_s=0.0):
        runs.append([(s.name, engine_of(s)) for s in servers])
        return [
            latency.VariantResult(
                s.name, [10.0, 20.0, 30.0] if s.name == "local" else [15.0, 25.0, 45.0]
            )
            for s in servers
        ]

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(latency, "run_typing", fake_typing)
    monkeypatch.setattr("lsp_server.model.loading.load_model", no_weights)
    source = tmp_path / "m.py"
    source.write_text(SOURCE)
    argv = ["bench", "latency", str(source), "--steps", "3", "--no-naive", "--cold-places", "0"]
    assert main([*argv, "--engine", "openai:http://127.0.0.1:9"]) == 0
    table = capsys.readouterr().out
    assert runs == [[("ours", "openai:http://127.0.0.1:9"), ("local", "local")]]
    ratio = next(line for line in table.splitlines() if "ours/local (ratio)" in line)
    assert ratio.split()[2] == "1.25"  # the p50 ratio, in the table printed for people
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


def test_llama_cpp_variant_feeds_the_same_prompts_and_times_decoding(
    monkeypatch, tmp_path: Path
) -> None:
    """run_llama_cpp against a stand-in `llama_cpp` module (the real one is optional)."""
    import sys
    import types

    import torch

    from lsp_server.measure.latency import run_llama_cpp

    calls: dict[str, object] = {}

    class Llama:
        def __init__(self, **kwargs: object) -> None:
            calls["init"] = kwargs

        def __call__(self, prompt: str, **kwargs: object):
            calls.setdefault("prompts", []).append(prompt)  # type: ignore[union-attr]
            assert kwargs["stop"] == ["\n"] and kwargs["temperature"] == 0.0
            pieces = ["x", " = ", "1"] if "a" in prompt else []
            return iter({"choices": [{"text": p}]} for p in pieces)

    class Completer:
        window = types.SimpleNamespace(window_tokens=8, count=len)  # a character a token

        def prompt_for(self, prefix: str, suffix: str) -> str:
            return f"<{prefix}|{suffix}>"

    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=Llama))
    typed = ["aa\nbb\ncc", "aa\nbb\nccd", "aa\nbb\nccd\ne", "aa\nbb\nccd\neff"]
    documents = [[(t + "\n#", len(t)) for t in typed], [("ab", 1)]]
    result = run_llama_cpp(documents, Completer(), tmp_path / "m.gguf", 8)
    assert result is not None and result.name == "llama.cpp"
    # The start fits 3/4 of the window, stays while the prompt fits, then moves; per document.
    assert calls["prompts"] == [
        "<bb\ncc|\n#>",
        "<bb\nccd|\n#>",
        "<bb\nccd\ne|\n#>",
        "<eff|\n#>",
        "<a|b>",
    ]
    init = calls["init"]
    assert isinstance(init, dict) and init["n_threads"] == torch.get_num_threads()
    summary = result.summary()
    assert summary["requests"] == 5
    assert summary["non_empty_share"] == 0.2
    assert summary["tokens_per_forward"] == 1.0 and summary["decode_ms_per_token"] >= 0


def test_the_stable_start_is_the_earliest_line_start_within_the_budget() -> None:
    from lsp_server.measure.latency import stable_start

    text = "one\ntwo\nthree\nfour"
    assert stable_start(text, len(text), len, 100) == 0
    assert stable_start(text, len(text), len, 10) == text.index("three")
    assert stable_start(text, len(text), len, 2) == text.index("four")  # the cursor's line
    assert stable_start("", 0, len, 5) == 0


def test_the_table_says_when_a_variant_never_ran_the_model() -> None:
    from lsp_server.measure.latency import markdown_table

    def variant(runs: int | None, p50: float) -> dict[str, object]:
        r = {"requests": 5, "p50_ms": p50, "p95_ms": p50, "mean_ms": p50}
        return r if runs is None else r | {"model_runs": runs}

    report = {"ours": variant(0, 1.0), "naive": variant(None, 5400.0)}
    report["ours/naive"] = {"p50_ms": 0.0, "p95_ms": 0.0}
    table = markdown_table(report)
    ours = next(line for line in table.splitlines() if line.startswith("| ours |"))
    assert "NEVER RAN THE MODEL" in ours and "model_runs=0" in ours
    ratio = next(line for line in table.splitlines() if "(ratio)" in line)
    assert "never ran the model" in ratio
    ran = markdown_table({"ours": variant(3, 10.0)})
    assert "never ran" not in ran.lower()
