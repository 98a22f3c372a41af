"""The adapter folder: what goes in it, and how it appears only when complete.

It holds PEFT's `adapter_config.json` and `adapter_model.safetensors`,
`codetailor.json` (written through `lsp_server.model.adapter_meta`, the module
the server reads it with) and the resolved config as `finetune.yaml`.

Everything is written into `OUT.partial/adapter`, flushed to the disk and
swapped in at OUT at the end, so a reader never sees a half-written adapter
under OUT, nor OUT missing while a previous adapter is replaced (see
`finetune.durable`). OUT may hold a previous adapter; anything else there is
refused. A run holds `OUT.lock`, so a second run on the same OUT stops at once.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path
from typing import Any

from finetune.durable import claim, swap_in
from lsp_server.errors import CodetailorError
from lsp_server.model.adapter_meta import AdapterMeta, has_meta, write_meta
from lsp_server.repo.git import git_text, run_git


def work_dir(out: Path) -> Path:
    """The run's scratch folder beside OUT: checkpoints and the adapter being written."""
    return out.with_name(out.name + ".partial")


def check_out(out: Path) -> None:
    """Claim OUT for this run (`OUT.lock`), and refuse an OUT that is a file or a
    folder holding something other than an adapter.

    Missing parent folders are fine: they are created here for the lock file.
    """
    claim(out)
    if out.is_file():
        raise CodetailorError(f"--out {out} is a file; give a folder for the adapter")
    if out.is_dir() and any(out.iterdir()) and not has_meta(out):
        raise CodetailorError(
            f"--out {out} already holds files that are not a codetailor adapter; "
            "choose an empty or new folder"
        )


def repository_info(repo: Path) -> dict[str, Any]:
    """Name, path, commit and whether the working tree had uncommitted changes."""

    commit = git_text(repo, "rev-parse", "HEAD")
    # Submodules are left out: git would run `status` in each with its own configuration.
    status = run_git(repo, "status", "--porcelain", "--ignore-submodules=all") if commit else None
    return {
        "name": repo.resolve().name,
        "path": str(repo.resolve()),
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
    }


def save_adapter(
    peft_model: Any,
    work: Path,
    meta: AdapterMeta,
    config_yaml: str,
    state_dict: dict[str, Any] | None = None,
) -> Path:
    """Write the adapter into `work/adapter` and return that folder (not yet published).

    `state_dict` is the gathered full state under FSDP, where the model's own is sharded.
    """
    staging = work / "adapter"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        peft_model.save_pretrained(str(staging), safe_serialization=True, state_dict=state_dict)
        (staging / "README.md").unlink(missing_ok=True)  # PEFT's empty model card
        write_meta(staging, meta)
        (staging / "finetune.yaml").write_text(config_yaml)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise disk_error(exc, staging) from exc
    return staging


def publish(staging: Path, out: Path) -> None:
    """Move the finished adapter to OUT, durably, replacing a previous adapter there."""
    swap_in(staging, out)


def disk_error(exc: OSError, where: Path) -> CodetailorError:
    """The one-line error for a failed write; a full disk says how to carry on."""
    if exc.errno == errno.ENOSPC:
        return CodetailorError(
            f"no space left on the device while writing {where}; free some space and rerun "
            "with --resume (training restarts from the last checkpoint)"
        )
    return CodetailorError(f"cannot write {where}: {exc.strerror or exc}")
