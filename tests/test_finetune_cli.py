"""`codetailor finetune` on the command line: output streams, bad input, and `accelerate launch`."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import pytest

from finetune.cli import add_arguments, config_from_args, main
from finetune.config import FinetuneConfig
from lsp_server.model import registry

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
FAST_YAML = ROOT / "finetune" / "configs" / "debug.yaml"
FAST = ["--seq-len", "64", "--max-steps", "3", "--config"]  # + a YAML from `fast_yaml`


@pytest.fixture(scope="module")
def fast_yaml(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The bundled debug recipe, with evaluation cut down to what a test needs."""
    path = tmp_path_factory.mktemp("config") / "fast.yaml"
    import yaml

    values = yaml.safe_load(FAST_YAML.read_text()) | {"match_samples": 2, "eval_blocks": 2}
    path.write_text(yaml.safe_dump(values | {"lr": 1e-2}))
    return str(path)


def test_json_summary_on_stdout_progress_on_stderr(
    fixture_repo: Path,
    tiny_model_dir: Path,
    fast_yaml: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "lora"
    argv = [str(fixture_repo), "--out", str(out), "--model", str(tiny_model_dir), *FAST, fast_yaml]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # stdout holds the one JSON object and nothing else
    assert summary["steps"] == 3 and summary["adapter"] == str(out)
    assert summary["data"]["redactions"]["aws_key"] == 1
    # One line says what data it used; the config, a key a line, only with -v.
    data_lines = [line for line in captured.err.splitlines() if "finetune: data: " in line]
    assert len(data_lines) == 1, captured.err
    for part in ("files", "to train on", "examples of up to 64 tokens", "held out", "3 steps"):
        assert part in data_lines[0]
    assert "resolved config" not in captured.err
    assert not out.with_name("lora.lock").exists()  # no lock file left behind
    assert "finetune:" in captured.err and "3/3" in captured.err  # the progress bar
    assert (out / "finetune.yaml").read_text().count("seq_len: 64") == 1
    # The finished adapter is registered under its repository, for the server to find.
    assert registry.lookup(fixture_repo).path == str(out.resolve())
    assert "registered adapter" in captured.err
    # Running again with nothing new changes nothing; --from-scratch replaces the adapter,
    # and the text summary is readable.
    assert main(argv) == 0
    assert "nothing new" in capsys.readouterr().err
    assert main([*argv, "--from-scratch", "-v"]) == 0
    again = capsys.readouterr()
    assert "resolved config" in again.err  # -v: the whole config
    text = again.out
    assert text.startswith(f"adapter: {out}") and "held-out loss:" in text


def test_codetailor_cli_runs_finetune_through_the_entry_point(
    fixture_repo: Path,
    tiny_model_dir: Path,
    fast_yaml: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import importlib.metadata

    from lsp_server import cli

    entry = EntryPoint("finetune", "finetune.cli:register", "codetailor.commands")
    real = importlib.metadata.entry_points

    def entry_points(**kwargs: Any) -> Any:
        return [entry] if kwargs.get("group") == "codetailor.commands" else real(**kwargs)

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    out = tmp_path / "lora"
    argv = ["finetune", str(fixture_repo), "--out", str(out), "--model", str(tiny_model_dir)]
    assert cli.main([*argv, *FAST, fast_yaml, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == 3
    assert cli.main(["finetune", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 2
    assert "is not a folder" in capsys.readouterr().err


# A value other than the default for every config key: `--set` must reach each one.
NOT_DEFAULT: dict[str, tuple[str, Any]] = {
    "model": ("Qwen/Qwen2.5-Coder-1.5B", "Qwen/Qwen2.5-Coder-1.5B"),
    "prompt_format": ("starcoder", "starcoder"),
    "device": ("cuda:1", "cuda:1"),
    "dtype": ("bfloat16", "bfloat16"),
    "trust_remote_code": ("true", True),
    "seed": ("7", 7),
    "holdout": ("0.2", 0.2),
    "max_file_bytes": ("1000", 1000),
    "extensions": (".py,.pyi", [".py", ".pyi"]),
    "near_duplicate_threshold": ("0.9", 0.9),
    "path_header": ("off", False),
    "fim_rate": ("0.9", 0.9),
    "spm_rate": ("0", 0.0),
    "fim_holes": ("3", 3),
    "seq_len": ("512", 512),
    "next_edit": ("false", False),
    "next_edit_share": ("0.3", 0.3),
    "next_edit_max_tokens": ("1000", 1000),
    "next_edit_partial_rate": ("0", 0.0),
    "next_edit_window": ("gpu", "gpu"),
    "next_edit_seq_len": ("2048", 2048),
    "init_adapter": ("adapters/general", "adapters/general"),
    "incremental": ("off", "off"),
    "replay_share": ("0.5", 0.5),
    "time_budget_minutes": ("10", 10.0),
    "lora_r": ("4", 4),
    "lora_alpha": ("8", 8.0),
    "lora_dropout": ("0.1", 0.1),
    "target_modules": ("[q_proj, v_proj]", ["q_proj", "v_proj"]),
    "epochs": ("2.5", 2.5),
    "max_steps": ("40", 40),
    "batch_size": ("4", 4),
    "grad_accum": ("2", 2),
    "lr": ("3e-4", 3e-4),
    "weight_decay": ("0.01", 0.01),
    "warmup_fraction": ("0.1", 0.1),
    "min_lr_fraction": ("0.2", 0.2),
    "max_grad_norm": ("0", 0.0),
    "gradient_checkpointing": ("yes", True),
    "eval_every": ("5", 5),
    "eval_blocks": ("3", 3),
    "patience": ("1", 1),
    "match_samples": ("4", 4),
    "match_window_tokens": ("128", 128),
    "match_max_tokens": ("8", 8),
    "checkpoint_every": ("10", 10),
}


def _config(*argv: str) -> FinetuneConfig:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return config_from_args(parser.parse_args(["repo", "--out", "adapter", *argv]))


def test_set_reaches_every_config_key_with_its_type() -> None:
    from dataclasses import fields

    assert set(NOT_DEFAULT) == {f.name for f in fields(FinetuneConfig)} - {"repo", "out"}
    settings = [arg for key, (text, _) in NOT_DEFAULT.items() for arg in ("--set", f"{key}={text}")]
    cfg = _config(*settings)
    defaults = FinetuneConfig()
    for key, (_, expected) in NOT_DEFAULT.items():
        assert getattr(cfg, key) == expected != getattr(defaults, key), key
    assert _config("--set", "max_steps=40", "--set", "max_steps=none").max_steps is None
    # --set comes after --config: the bundled recipe's lora_r is 8.
    assert _config("--config", "debug.yaml", "--set", "lora_r=2").lora_r == 2


def test_help_and_the_debug_recipe_list_every_config_key(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import re
    from dataclasses import fields

    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = capsys.readouterr().out
    recipe = FAST_YAML.read_text()
    for f in fields(FinetuneConfig):
        assert re.search(rf"^  {f.name} \(", help_text, re.M), f"--help lacks {f.name}"
        # Set, or (repo, out) named in a comment, since they come from the command line.
        assert re.search(rf"^(# )?{f.name}:", recipe, re.M), f"debug.yaml lacks {f.name}"


def _bad_model(tmp: Path) -> str:
    (tmp / "broken-model").mkdir()
    (tmp / "broken-model" / "config.json").write_text("{}")
    return str(tmp / "broken-model")


def _out_with_other_files(tmp: Path) -> Path:
    (tmp / "taken").mkdir()
    (tmp / "taken" / "notes.txt").write_text("mine")
    return tmp / "taken"


def _empty_repo(tmp: Path) -> Path:
    repo = tmp / "empty"
    repo.mkdir()
    (repo / "image.png").write_bytes(b"\x89PNG\x00")
    (repo / "yarn.lock").write_text("x")
    return repo


def _one_file_repo(tmp: Path) -> Path:
    repo = tmp / "single"
    repo.mkdir()
    (repo / "only.py").write_text("def f():\n    return 1\n")
    return repo


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("not_a_folder", "is not a folder"),
        ("no_sources", "has no source files to train on"),
        ("single_file", "none can be held out; pass --holdout 0"),
        ("bad_model", "cannot load model"),
        ("missing_model", "does not exist"),
        ("out_taken", "not a codetailor adapter"),
        ("bad_value", "holdout must be in [0, 1)"),
        ("unknown_key", "--set lora_rank: unknown config key; valid keys: repo, out, model"),
        ("bad_set_value", "--set lr=fast: config key lr must be float, got 'fast'"),
        ("set_twice", "--set max_steps repeats a value given on the command line"),
        ("not_key_value", "--set expects KEY=VALUE, got 'lora_r'"),
    ],
)
def test_bad_input_is_one_line_and_no_adapter(
    case: str,
    message: str,
    fixture_repo: Path,
    tiny_model_dir: Path,
    fast_yaml: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, out, extra = fixture_repo, tmp_path / "lora", []
    model = str(tiny_model_dir)
    if case == "not_a_folder":
        repo = fixture_repo / "pkg" / "mod02.py"
    elif case == "no_sources":
        repo = _empty_repo(tmp_path)
    elif case == "single_file":
        repo = _one_file_repo(tmp_path)
    elif case == "bad_model":
        model = _bad_model(tmp_path)
    elif case == "missing_model":
        model = str(tmp_path / "no-such-model")
    elif case == "out_taken":
        out = _out_with_other_files(tmp_path)
    elif case == "bad_value":
        extra = ["--holdout", "1.5"]
    elif case == "unknown_key":
        extra = ["--set", "lora_rank=4"]
    elif case == "bad_set_value":
        extra = ["--set", "lr=fast"]
    elif case == "set_twice":
        extra = ["--set", "max_steps=5"]  # FAST passes --max-steps too
    elif case == "not_key_value":
        extra = ["--set", "lora_r"]
    code = main([str(repo), "--out", str(out), "--model", model, *FAST, fast_yaml, *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("codetailor: error:") and message in err[-1]
    assert "Traceback" not in "\n".join(err)
    assert not (out / "adapter_model.safetensors").exists()


def test_holdout_zero_trains_without_evaluation(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = _one_file_repo(tmp_path)
    argv = [str(repo), "--out", str(tmp_path / "lora"), "--model", str(tiny_model_dir)]
    assert main([*argv, "--seq-len", "64", "--max-steps", "2", "--holdout", "0", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["heldout_loss_after"] is None and summary["data"]["heldout_files"] == 0


def test_full_disk_leaves_no_adapter_and_resume_finishes(
    fixture_repo: Path,
    tiny_model_dir: Path,
    fast_yaml: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from peft import PeftModel

    def full_disk(self: Any, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "lora"
    argv = [str(fixture_repo), "--out", str(out), "--model", str(tiny_model_dir), *FAST, fast_yaml]
    with monkeypatch.context() as mp:
        mp.setattr(PeftModel, "save_pretrained", full_disk)
        assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no space left" in err and "--resume" in err
    assert not out.exists()
    assert main([*argv, "--resume"]) == 0
    assert (out / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_accelerate_launch_two_processes_on_cpu(
    fixture_repo: Path, tiny_fim_model_dir: Path, fast_yaml: str, tmp_path: Path
) -> None:
    """Data parallel over two CPU processes (gloo): one adapter, loadable by the server."""
    from lsp_server.model.loading import load_model

    out = tmp_path / "ddp-lora"
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"]
    launch += ["--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]
    launch += ["--dynamo_backend", "no", "-m", "finetune.cli"]
    args = [
        str(fixture_repo),
        "--out",
        str(out),
        "--model",
        str(tiny_fim_model_dir),
        *FAST,
        fast_yaml,
    ]
    done = subprocess.run(
        [*launch, *args, "--json", "--max-steps", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only the main process reports
    summary = lines[0]
    assert summary["steps"] == 4
    # Two processes each take batch_size sequences per step.
    assert summary["train_tokens_seen"] > 4 * 2 * 2 * 32
    assert summary["heldout_loss_after"] > 0
    loaded = load_model(str(tiny_fim_model_dir), adapter=out, device="cpu")
    assert loaded.adapter is not None and loaded.adapter.prompt_format == "starcoder"


def _steps_seen(text: str, total: int) -> int:
    """The last step the progress bar reported ("finetune: ... 7/400")."""
    import re

    found = re.findall(rf"finetune:[^\r\n]*?(\d+)/{total}", text)
    return int(found[-1]) if found else 0


def _train_until_signalled(argv: list[str], sig: int, after: int, total: int) -> tuple[int, str]:
    """Run finetune with stdout and stderr on pipes; once the bar shows a step past `after`,
    close both pipes' reading ends (as when `| tee` dies on Ctrl-C), then send `sig`."""
    import select
    import signal
    import time

    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "finetune.cli", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None and proc.stdout is not None
    seen = b""
    deadline = time.monotonic() + 180
    while _steps_seen(seen.decode(errors="replace"), total) <= after:
        assert time.monotonic() < deadline and proc.poll() is None, seen.decode()[-2000:]
        if select.select([proc.stderr], [], [], 0.5)[0]:
            seen += os.read(proc.stderr.fileno(), 65536)
    proc.stdout.close()
    proc.stderr.close()  # the reader is gone: every later write to either pipe fails
    proc.send_signal(sig)
    if sig == signal.SIGINT:
        time.sleep(0.05)
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, seen.decode(errors="replace")


def test_ctrl_c_and_sigterm_with_output_on_a_pipe_keep_every_step_and_resume_continues(
    fixture_repo: Path, tiny_model_dir: Path, fast_yaml: str, tmp_path: Path
) -> None:
    import signal

    from finetune import checkpoint

    out = tmp_path / "lora"
    total = 400
    argv = [str(fixture_repo), "--out", str(out), "--model", str(tiny_model_dir), "--seq-len"]
    argv += ["64", "--config", fast_yaml, "--set", "checkpoint_every=1000", "--set"]
    argv += ["eval_every=0", "--set", "patience=0", "--set", "match_samples=0"]
    work = out.with_name("lora.partial")

    code, seen = _train_until_signalled([*argv, "--max-steps", str(total)], signal.SIGINT, 0, total)
    assert code == 130, seen[-2000:]
    found = checkpoint.find(work)
    assert found is not None, "Ctrl-C lost the steps done"
    first = checkpoint.read_state(found).step
    assert first >= _steps_seen(seen, total) >= 1

    resumed = [*argv, "--max-steps", str(total), "--resume"]
    code, seen = _train_until_signalled(resumed, signal.SIGTERM, first, total)
    assert code == 130 and f"resuming at step {first} of {total}" in seen
    found = checkpoint.find(work)
    assert found is not None
    second = checkpoint.read_state(found).step
    assert second > first

    finish = [*argv, "--max-steps", str(second + 1), "--resume", "--json", "--no-progress"]
    done = subprocess.run(
        [sys.executable, "-m", "finetune.cli", *finish],
        capture_output=True,
        env=os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        cwd=ROOT,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert json.loads(done.stdout)["steps"] == second + 1
    assert not work.exists() and not out.with_name("lora.lock").exists()


def test_the_config_files_out_is_written_not_the_registered_adapter(tmp_path: Path) -> None:
    """A run with no --out updates the repository's registered adapter, unless the
    --config file or --set names the folder: then that one is written (a config's `out`
    was once overridden by the registered adapter, which the run then replaced)."""
    import argparse

    from finetune.cli import add_arguments, config_from_args, out_given

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"out: {tmp_path / 'elsewhere'}\nmax_steps: 3\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    from_file = parser.parse_args(["repo", "--config", str(recipe)])
    assert out_given(from_file)
    assert config_from_args(from_file).out == str(tmp_path / "elsewhere")
    by_set = parser.parse_args(["repo", "--set", f"out={tmp_path / 'set'}"])
    assert out_given(by_set) and config_from_args(by_set).out == str(tmp_path / "set")
    cli = parser.parse_args(["repo", "--config", str(recipe), "--out", str(tmp_path / "cli")])
    assert config_from_args(cli).out == str(tmp_path / "cli")  # the command line wins
    assert not out_given(parser.parse_args(["repo"]))  # then: the registered adapter
