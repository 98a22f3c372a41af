"""`codetailor complete` end to end on the tiny model, and its one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lsp_server.cli import main, offset_of, parse_location
from lsp_server.errors import CodetailorError

SOURCE = (
    "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json.load(f)\n"
)


@pytest.fixture
def source_file(tmp_path: Path) -> Path:
    path = tmp_path / "mod.py"
    path.write_text(SOURCE)
    return path


def test_parse_location() -> None:
    assert parse_location("a/b.py:3:7") == (Path("a/b.py"), 3, 7)
    assert parse_location("C:/src/x.py:1:1") == (Path("C:/src/x.py"), 1, 1)
    for bad in ("x.py", "x.py:3", "x.py:a:1", "x.py:0:1"):
        with pytest.raises(CodetailorError):
            parse_location(bad)


def test_offset_of_counts_characters_and_allows_end_of_line() -> None:
    text = "ab\ncdé\n"
    assert offset_of(text, 1, 1) == 0
    assert offset_of(text, 2, 4) == 6  # just after the é
    assert offset_of("😀x\n", 1, 3) == 2  # past U+1F600: one column, not two UTF-16 units
    with pytest.raises(CodetailorError, match="past the end of line 2"):
        offset_of(text, 2, 5)
    with pytest.raises(CodetailorError, match="past the end of the file"):
        offset_of(text, 9, 1)


def test_complete_prints_the_completion(
    source_file: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complete", f"{source_file}:5:19", "--model", str(tiny_model_dir)]) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n") and "\n" not in out[:-1]  # one line: the completion alone


def test_complete_json_reports_counts_and_cache_reuse(
    source_file: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "complete",
            f"{source_file}:5:19",
            "--model",
            str(tiny_model_dir),
            "--json",
            "--repeat",
            "2",
            "--max-tokens",
            "8",
        ]
    )
    assert code == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    for record in (first, second):
        for key in ("text", "latency_ms", "prompt_tokens", "cached_tokens", "generated_tokens"):
            assert key in record
        assert record["generated_tokens"] <= 8
    assert first["cached_tokens"] == 0
    assert second["cached_tokens"] == second["prompt_tokens"] - 1
    assert second["text"] == first["text"]


def test_show_prompt_prints_the_exact_prompt(
    source_file: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["complete", f"{source_file}:5:19", "--model", str(tiny_model_dir), "--show-prompt"])
    err = capsys.readouterr().err
    assert "def load(path):\n    with open(path" in err


@pytest.mark.parametrize(
    ("make", "location", "message"),
    [
        (lambda p: None, "{p}/missing.py:1:1", "no such file"),
        (lambda p: (p / "b.bin").write_bytes(b"\x00\x01\x02"), "{p}/b.bin:1:1", "looks binary"),
        (lambda p: (p / "l.py").write_bytes(b"caf\xe9\n"), "{p}/l.py:1:1", "not UTF-8"),
        (lambda p: (p / "s.py").write_text("x\n"), "{p}/s.py:5:1", "past the end of the file"),
        (lambda p: (p / "c.py").write_text("x\n"), "{p}/c.py:1:9", "past the end of line 1"),
        (lambda p: None, "nonsense", "expected FILE:LINE:COL"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], make, location: str, message: str
) -> None:
    make(tmp_path)
    assert main(["complete", location.format(p=tmp_path)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("codetailor: error: ")


def test_unknown_model_is_one_line_and_exit_2(
    source_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["complete", f"{source_file}:1:1", "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and err.count("\n") == 1


def test_hub_id_loads_from_the_hugging_face_cache(
    tmp_path: Path, source_file: Path, tiny_model_dir: Path
) -> None:
    """A hub id resolves through the standard HF cache; here one laid out by hand, offline."""
    hub = tmp_path / "hub"
    repo = hub / "models--codetailor-test--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    env = os.environ | {"HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lsp_server.cli",
            "complete",
            f"{source_file}:5:19",
            "--model",
            "codetailor-test/tiny",
            "--json",
            "--max-tokens",
            "4",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model"] == "codetailor-test/tiny"
