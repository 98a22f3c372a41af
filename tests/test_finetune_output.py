"""The fine-tune's output folder (finding 12): one run at a time, flushed, never absent."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
from pathlib import Path

import pytest

from finetune import adapter, checkpoint, durable
from finetune.cli import main
from lsp_server.model.adapter_meta import META_FILE as ADAPTER_META

ROOT = Path(__file__).resolve().parents[1]


def _adapter_folder(folder: Path, marker: str) -> Path:
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(b"weights " + marker.encode())
    (folder / ADAPTER_META).write_text(f'{{"marker": "{marker}"}}')
    return folder


def test_a_second_run_on_the_same_out_fails_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lora"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from finetune import durable;"
         f"durable.claim(Path({str(out)!r})); print('held', flush=True); sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        selector = selectors.DefaultSelector()
        selector.register(holder.stdout, selectors.EVENT_READ)
        assert selector.select(timeout=60), "the first run never took the lock"
        assert holder.stdout.readline().strip() == "held"
        code = main([str(tmp_path / "repo"), "--out", str(out), "--model", str(tmp_path / "m")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0
        assert len(err) == 1 and "another finetune run" in err[0] and str(holder.pid) in err[0]
    finally:
        holder.communicate("", timeout=30)
    durable.claim(out)  # the first run is gone: the lock is free again
    durable.release(out)


def test_publishing_over_an_adapter_never_leaves_out_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = _adapter_folder(tmp_path / "lora", "old")
    staging = _adapter_folder(tmp_path / "lora.partial" / "adapter", "new")
    missing: list[str] = []
    real_rename, real_replace = Path.rename, os.replace

    def rename(self: Path, target: str | Path) -> Path:
        result = real_rename(self, target)
        if not out.exists():
            missing.append(f"after renaming {self.name} -> {Path(target).name}")
        return result

    def replace(src: str | Path, dst: str | Path) -> None:
        real_replace(src, dst)
        if not out.exists():
            missing.append(f"after replacing {dst}")

    monkeypatch.setattr(Path, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    adapter.publish(staging, out)
    assert missing == []
    assert (out / ADAPTER_META).read_text() == '{"marker": "new"}'
    assert not staging.exists() and not out.with_name("lora.old").exists()


def test_files_and_folders_are_flushed_before_they_are_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    real_fsync, real_exchange = os.fsync, durable.exchange

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def exchange(a: Path, b: Path) -> bool:
        events.append(("publish", str(b)))
        return real_exchange(a, b)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(durable, "exchange", exchange)
    out = _adapter_folder(tmp_path / "lora", "old")
    staging = _adapter_folder(tmp_path / "lora.partial" / "adapter", "new")
    written = {str(p) for p in staging.iterdir()} | {str(staging)}
    adapter.publish(staging, out)
    at = events.index(("publish", str(out)))
    assert written <= {path for kind, path in events[:at] if kind == "fsync"}
    assert ("fsync", str(tmp_path)) in events[at:]  # the rename itself reaches the disk


def test_a_checkpoint_is_flushed_and_swapped_in_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    weight = torch.nn.Parameter(torch.ones(2, 2))
    optimizer = torch.optim.SGD([weight], lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    lora = {"a.lora_A.weight": weight.detach()}
    checkpoint.save(tmp_path, checkpoint.TrainState(step=1), lora, None, optimizer, scheduler)
    flushed: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: (flushed.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd))
    )
    checkpoint.save(tmp_path, checkpoint.TrainState(step=2), lora, None, optimizer, scheduler)
    final = tmp_path / checkpoint.CHECKPOINT
    assert checkpoint.read_state(final).step == 2
    assert {str(final / n) for n in ("lora.safetensors", "optimizer.pt", "state.json")} <= {
        p.replace(f"{checkpoint.CHECKPOINT}.tmp", checkpoint.CHECKPOINT) for p in flushed
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == [checkpoint.CHECKPOINT]
