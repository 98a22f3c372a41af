"""A folder's git configuration runs nothing, through any entry point that runs git on it.

Issue 28, item 1: a `.git/config` that names commands (`core.fsmonitor`,
filter, diff and merge drivers, hooks, pagers, signature programs, transports)
ran them when the server listed the folder, when the adapter registry looked up
its remote, and when `codetailor finetune` listed and described it. Each test
plants every executing key with a command that touches a marker file, in the
repository's own `.git` and in a git folder reached through a `.git` file's
`gitdir:` line, drives every entry point, and checks that no marker appears.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from finetune.adapter import repository_info
from lsp_server.model.registry import repo_identity
from lsp_server.repo.corpus import collect
from lsp_server.repo.files import list_files
from lsp_server.repo.git import git_text, run_git
from lsp_server.repo.head import head_text

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")

HOOKS = [
    "post-index-change",
    "pre-commit",
    "post-checkout",
    "post-merge",
    "reference-transaction",
    "fsmonitor-watchman",
    "pre-auto-gc",
    "post-rewrite",
    "push-to-checkout",
]


def _sh(root: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.strip()


def _executing_config(marker: Path) -> dict[str, str]:
    """Every configuration key known to make git run a command, each touching its own marker.

    Each command is a script (git runs some through a shell and some directly);
    filters and textconv pass their input through, so git goes on to the next step.
    """
    keys = [
        "core.fsmonitor",
        "core.sshCommand",
        "core.gitProxy",
        "core.askPass",
        "core.pager",
        "core.editor",
        "core.alternateRefsCommand",
        "sequence.editor",
        "diff.external",
        "diff.evil.command",
        "diff.evil.textconv",
        "filter.evil.clean",
        "filter.evil.smudge",
        "filter.evil.process",
        "merge.evil.driver",
        "pager.log",
        "pager.show",
        "pager.diff",
        "pager.status",
        "pager.ls-files",
        "gpg.program",
        "gpg.ssh.program",
        "uploadpack.packObjectsHook",
        "remote.origin.uploadpack",
        "remote.origin.receivepack",
    ]
    bin_dir = marker.parent / "bin"
    bin_dir.mkdir(exist_ok=True)
    planted = {}
    for key in keys:
        script = bin_dir / key
        passes = key.endswith((".clean", ".smudge", ".textconv"))
        script.write_text(f"#!/bin/sh\ntouch '{marker}/{key}'\n" + ("cat\n" if passes else ""))
        script.chmod(0o755)
        planted[key] = str(script)
    planted["alias.ls-files"] = planted["alias.status"] = f"!{bin_dir / 'core.editor'}"
    planted["credential.helper"] = f"!{bin_dir / 'core.askPass'}"
    planted["log.showSignature"] = "true"
    planted["remote.origin.url"] = f"ext::{bin_dir / 'core.sshCommand'}"
    planted["core.hooksPath"] = str(marker.parent / "hooks")
    return planted


def _script(marker: Path, name: str) -> Path:
    script = marker.parent / f"{name}.sh"
    script.write_text(f"#!/bin/sh\ntouch '{marker}/{name}'\ncat\n")
    script.chmod(0o755)
    return script


def _plant(git_dir: Path, work: Path, marker: Path) -> None:
    """A committed, signed-looking history plus a dirty work tree, then the hostile config."""
    _sh(work, "config", "user.email", "a@example.com")
    _sh(work, "config", "user.name", "a")
    (work / "app.py").write_text("x = 1\n")
    (work / ".gitattributes").write_text("* filter=evil diff=evil merge=evil\n")
    _sh(work, "add", "-A")
    _sh(work, "commit", "-qm", "first")
    # A commit carrying a signature header, so that `log.showSignature` would call gpg.
    headers, message = _sh(work, "cat-file", "commit", "HEAD").split("\n\n", 1)
    signature = "gpgsig -----BEGIN PGP SIGNATURE-----\n x\n -----END PGP SIGNATURE-----"
    signed = f"{headers}\n{signature}\n\n{message}\n"
    sha = _sh(work, "hash-object", "-w", "-t", "commit", "--stdin", stdin=signed)
    _sh(work, "update-ref", "HEAD", sha)
    (work / "app.py").write_text("x = 2\n")  # dirty, same size: status must look at content
    (work / "new.py").write_text("y = 1\n")
    hooks = marker.parent / "hooks"
    for folder in (hooks, git_dir / "hooks"):
        folder.mkdir(exist_ok=True)
        for name in HOOKS:
            script = folder / name
            script.write_text(f"#!/bin/sh\ntouch '{marker}/hook-{name}'\n")
            script.chmod(0o755)
    (git_dir / "info").mkdir(exist_ok=True)
    (git_dir / "info" / "attributes").write_text("*.py filter=evil diff=evil\n")
    for key, value in _executing_config(marker).items():
        _sh(work, "config", key, value)


def _drive_every_entry_point(work: Path) -> dict[str, Any]:
    """What each entry point answers; checked after the markers, so a run that fails
    still shows what it ran."""
    return {
        "listed": set(list_files(work)),
        "identity": repo_identity(work),
        "info": repository_info(work),
        "corpus": [f.path for f in collect(work).files],
        # What next-edit history mining will run, through the same runner.
        "log": run_git(work, "log", "-p", "--all") or b"",
        "show": run_git(work, "show", "HEAD:app.py") or b"",
        "diff": run_git(work, "diff", "HEAD") or b"",
        "diff_stat": run_git(work, "diff", "--stat"),
        "status": git_text(work, "status", "--porcelain"),
        "blame": run_git(work, "blame", "app.py"),
        "head": head_text(str(work / "app.py")),  # a next-edit window's original
    }


def _check_answers(work: Path, got: dict[str, Any]) -> None:
    """The defused runs still answer as git would."""
    assert {"app.py", "new.py"} <= got["listed"]
    root, remote = got["identity"]
    assert root == work.resolve() and remote is not None and "core.sshCommand" in remote
    info = got["info"]
    assert info["commit"] and info["dirty"] is True
    assert got["corpus"] == ["app.py", "new.py"]
    assert b"x = 1" in got["log"] and b"x = 1" in got["show"]
    assert b"+x = 2" in got["diff"]
    assert None not in (got["diff_stat"], got["status"], got["blame"])
    assert got["head"] is not None and "x = 1" in got["head"]


def _assert_nothing_ran(marker: Path) -> None:
    assert sorted(p.name for p in marker.iterdir()) == []


def test_the_folders_own_git_config_runs_nothing(tmp_path: Path) -> None:
    work, marker = tmp_path / "repo", tmp_path / "ran"
    work.mkdir()
    marker.mkdir()
    _sh(work, "init", "-q")
    _plant(work / ".git", work, marker)
    got = _drive_every_entry_point(work)
    _assert_nothing_ran(marker)
    _check_answers(work, got)


def test_a_gitdir_file_pointing_elsewhere_runs_nothing(tmp_path: Path) -> None:
    work, elsewhere, marker = tmp_path / "repo", tmp_path / "elsewhere.git", tmp_path / "ran"
    work.mkdir()
    marker.mkdir()
    _sh(work, "init", "-q", f"--separate-git-dir={elsewhere}")
    assert (work / ".git").is_file()
    _plant(elsewhere, work, marker)
    got = _drive_every_entry_point(work)
    _assert_nothing_ran(marker)
    _check_answers(work, got)


def test_the_planted_config_does_run_under_plain_git(tmp_path: Path) -> None:
    """The plant is live: plain `git status`, `log` and `diff` run its commands."""
    work, marker = tmp_path / "repo", tmp_path / "ran"
    work.mkdir()
    marker.mkdir()
    _sh(work, "init", "-q")
    _plant(work / ".git", work, marker)
    for args in (["status"], ["log", "-p"]):
        subprocess.run(["git", "-C", str(work), *args], capture_output=True, timeout=30)
    _sh(work, "config", "--unset", "filter.evil.process")  # it fails, and stops `diff`
    (work / "app.py").write_text("x = 3\n")
    for args in (["status"], ["diff"]):
        subprocess.run(["git", "-C", str(work), *args], capture_output=True, timeout=30)
    ran = {p.name for p in marker.iterdir()}
    assert {"core.fsmonitor", "filter.evil.process", "gpg.program"} <= ran
    assert {"filter.evil.clean", "diff.evil.command", "hook-post-index-change"} <= ran


def test_a_partial_clone_fetches_no_missing_object_through_its_remote(tmp_path: Path) -> None:
    """A promisor remote `ext::CMD` with `protocol.ext.allow=always`: plain git runs CMD to
    fetch a blob the history names but the folder lacks."""
    work, marker = tmp_path / "repo", tmp_path / "ran"
    work.mkdir()
    marker.mkdir()
    _sh(work, "init", "-q")
    _sh(work, "config", "user.email", "a@example.com")
    _sh(work, "config", "user.name", "a")
    blob = _sh(work, "hash-object", "--stdin", stdin="never stored\n")
    tree = _sh(work, "mktree", "--missing", stdin=f"100644 blob {blob}\tgone.py\n")
    _sh(work, "update-ref", "HEAD", _sh(work, "commit-tree", tree, "-m", "x"))
    fetch = tmp_path / "fetch.sh"
    fetch.write_text(f"#!/bin/sh\ntouch '{marker}/fetch'\n")
    fetch.chmod(0o755)
    for key, value in {
        "core.repositoryformatversion": "1",
        "extensions.partialClone": "origin",
        "remote.origin.promisor": "true",
        "remote.origin.url": f"ext::{fetch}",
        "protocol.ext.allow": "always",
    }.items():
        _sh(work, "config", key, value)
    assert run_git(work, "show", "HEAD:gone.py") is None
    run_git(work, "log", "-p")  # whatever it answers, it fetches nothing
    _assert_nothing_ran(marker)
    plain = ["git", "-C", str(work), "show", "HEAD:gone.py"]
    subprocess.run(plain, capture_output=True, stdin=subprocess.DEVNULL, timeout=30)
    assert (marker / "fetch").exists()  # the plant is live


def test_a_driver_whose_name_holds_an_equals_sign_is_blanked_too(tmp_path: Path) -> None:
    work, marker = tmp_path / "repo", tmp_path / "ran"
    work.mkdir()
    marker.mkdir()
    _sh(work, "init", "-q")
    (work / "a.py").write_text("a = 1\n")
    (work / ".gitattributes").write_text("* filter=a=b\n")
    _sh(work, "add", "-A")
    (work / "a.py").write_text("a = 2\n")
    _sh(work, "config", "filter.a=b.clean", str(_script(marker, "clean")))
    _sh(work, "config", "filter.a=b.smudge", str(_script(marker, "smudge")))
    assert git_text(work, "status", "--porcelain") is not None
    assert "a.py" in list_files(work)
    _assert_nothing_ran(marker)


def test_inherited_git_variables_do_not_redirect_the_runner(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work, other = tmp_path / "repo", tmp_path / "other"
    for folder in (work, other):
        folder.mkdir()
        _sh(folder, "init", "-q")
    (work / "mine.py").write_text("")
    (other / "theirs.py").write_text("")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert list_files(work) == ["mine.py"]


def test_no_other_module_runs_git() -> None:
    """Every git call goes through `lsp_server.repo.git`, so none misses its defences."""
    root = Path(__file__).resolve().parent.parent
    runner = root / "lsp_server" / "repo" / "git.py"
    offenders = [
        str(path.relative_to(root))
        for package in ("lsp_server", "finetune")
        for path in sorted((root / package).rglob("*.py"))
        if path != runner and re.search(r"""["']git["']\s*,""", path.read_text())
    ]
    assert offenders == []
