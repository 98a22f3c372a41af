"""The Emacs clients (editors/emacs) in a real `emacs --batch -Q`, against the real server.

Each test sets Emacs up as the README says (`load` the client's file, then
`setq codetailor-command` to the server), with the server *not* on PATH, opens
a real Python file whose last line stops mid-word and calls
`completion-at-point` until the candidate is inserted
(editors/emacs/test/codetailor-e2e.el drives it and prints what it saw as
JSON); editors/emacs/test/codetailor-test.el holds ERT tests of the clients'
own logic. The server runs the tiny model, whose text is noise: the test checks
that the candidate the server sent is exactly what was inserted, and that the
server counted one accept.

Emacs, Eglot and lsp-mode are Debian's (`apt-get install emacs-nox elpa-eglot
elpa-lsp-mode`, which `make test` does when they are missing); the tests skip
only when they are not installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]
CLIENTS = REPO / "editors" / "emacs"
DRIVER = CLIENTS / "test" / "codetailor-e2e.el"
EMACS = shutil.which("emacs")
# Debian's elpa-* packages; `emacs -Q` does not activate them by itself.
SYSTEM_ELPA = Path("/usr/share/emacs/site-lisp/elpa")
PACKAGES = (
    f'(progn (add-to-list (quote package-directory-list) "{SYSTEM_ELPA}") (package-initialize))'
)
TEXT = "def add(a, b):\n    re\n"  # the tiny model completes "re" with a non-empty rest
LINE = 2

pytestmark = pytest.mark.skipif(
    EMACS is None,
    reason="no emacs on PATH: `make editors-deps` (apt-get install emacs-nox elpa-eglot"
    " elpa-lsp-mode) installs it",
)


def emacs_has(feature: str) -> bool:
    probe = f"(kill-emacs (if (require (quote {feature}) nil t) 0 1))"
    done = subprocess.run(
        [EMACS, "--batch", "-Q", "--eval", PACKAGES, "--eval", probe],
        capture_output=True,
        timeout=60,
    )
    return done.returncode == 0


def elisp(value: str) -> str:
    return json.dumps(value)  # a JSON string is an Emacs Lisp string here (paths, flags)


def server_not_on_path(tmp_path: Path) -> tuple[Path, str]:
    """A `codetailor` in a folder off PATH, like .venv/bin/codetailor, and a PATH without one."""
    folder = tmp_path / "venv-bin"
    folder.mkdir()
    server = folder / "codetailor"
    server.write_text(
        f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m lsp_server.cli "$@"\n'
    )
    server.chmod(0o755)
    dirs = os.environ.get("PATH", "").split(os.pathsep)
    path = os.pathsep.join(
        d
        for d in dirs
        if d and not (Path(d) / "codetailor").exists() and Path(d) != Path(sys.executable).parent
    )
    assert shutil.which("codetailor", path=path) is None
    return server, path


def run_emacs(
    tmp_path: Path, path: str, setup: list[str], call: str, timeout: float = 240
) -> tuple[dict[str, Any], float, str]:
    """`emacs --batch -Q` with the README's SETUP forms, the driver, then CALL; its JSON."""
    args = [EMACS, "--batch", "-Q", "--eval", PACKAGES]
    for form in setup:
        args += ["--eval", form]
    args += ["-l", str(DRIVER), "--eval", call]
    home = tmp_path / "home"  # lsp-mode's session file, ~/.emacs.d: nothing of the user's
    home.mkdir(exist_ok=True)
    env = dict(os.environ, PATH=path, HOME=str(home))
    started = time.monotonic()
    done = subprocess.run(
        args, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )
    seconds = time.monotonic() - started
    stderr = done.stderr[-4000:]
    assert done.returncode == 0, f"emacs exited {done.returncode}\n{done.stdout}\n{stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds, stderr


def test_the_clients_own_logic_in_ert() -> None:
    """Settings merge, echo-area line, command check, one accept per insertion (no server)."""
    if not emacs_has("eglot"):
        pytest.skip("no Eglot for this Emacs: apt-get install elpa-eglot")
    done = subprocess.run(
        [EMACS, "--batch", "-Q", "--eval", PACKAGES, "-L", str(CLIENTS)]
        + ["-l", "codetailor-eglot", "-l", str(CLIENTS / "test" / "codetailor-test.el")]
        + ["-f", "ert-run-tests-batch-and-exit"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "0 unexpected" in done.stderr


def check_completion(result: dict[str, Any]) -> None:
    candidate = result["candidate"]
    assert candidate and candidate.startswith("re"), result
    # The server's edit replaced the typed "re" with the candidate, nothing more or less.
    assert result["text"] == "def add(a, b):\n    " + candidate + "\n", result
    assert result["point"] == len("def add(a, b):\n    " + candidate), result
    # Each call before the model was ready said why instead of "No match".
    assert result["loading_calls"] == result["calls"] - 1, result
    assert result["accepted"] == 1 and result["accepted_completion"] == 1, result


def test_eglot_completes_from_the_readme_setup_and_counts_the_accept(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    if not emacs_has("eglot"):
        pytest.skip("no Eglot for this Emacs: apt-get install elpa-eglot")
    server, path = server_not_on_path(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "add.py").write_text(TEXT)
    # A directory-local configuration with a section for another server and one of ours.
    (project / ".dir-locals.el").write_text(
        "((python-mode . ((eglot-workspace-configuration"
        " . (:pylsp (:plugins (:jedi (:enabled t))) :codetailor (:maxTokens 8))))))\n"
    )
    setup = [
        f'(load "{CLIENTS}/codetailor-eglot.el")',
        f'(setq codetailor-command \'({elisp(str(server))} "serve"'
        f' "--model" {elisp(str(tiny_model_dir))}))',
    ]
    result, seconds, stderr = run_emacs(
        tmp_path,
        path,
        setup,
        f"(codetailor-e2e-run 'eglot {elisp(str(project / 'add.py'))} {LINE})",
    )
    print(f"eglot: {seconds:.1f} s in all, {result['timings']}")
    check_completion(result)
    assert "Codetailor: loading" in stderr or result["loading_calls"] == 0
    # Our settings joined the directory-local value, which wins; the other section stays.
    configuration = result["configuration"]
    assert configuration["pylsp"] == {"plugins": {"jedi": {"enabled": True}}}
    assert configuration["codetailor"]["maxTokens"] == 8
    assert configuration["codetailor"]["multiline"] == "auto"
    assert result["max_tokens"] == 8  # the server got it (workspace/didChangeConfiguration)


def test_lsp_mode_8_completes_without_ghost_text_and_counts_the_accept(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    if not emacs_has("lsp-mode"):
        pytest.skip("no lsp-mode for this Emacs: apt-get install elpa-lsp-mode")
    server, path = server_not_on_path(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    (project / "add.py").write_text(TEXT)
    setup = [
        f'(load "{CLIENTS}/codetailor-lsp-mode.el")',
        f'(setq codetailor-command \'({elisp(str(server))} "serve"'
        f' "--model" {elisp(str(tiny_model_dir))}))',
        "(setq codetailor-settings (plist-put codetailor-settings :maxTokens 8))",
    ]
    result, seconds, stderr = run_emacs(
        tmp_path,
        path,
        setup,
        f"(codetailor-e2e-run 'lsp-mode {elisp(str(project / 'add.py'))} {LINE})",
    )
    print(f"lsp-mode: {seconds:.1f} s in all, {result['timings']}")
    check_completion(result)
    assert result["max_tokens"] == 8
    if not emacs_has("lsp-inline-completion"):  # lsp-mode before 9.0.1: one line, no error
        assert stderr.count("Codetailor: ghost text needs lsp-mode 9.0.1+") == 1, stderr
        assert "lsp-inline-completion-mode" not in stderr, stderr


@pytest.mark.parametrize("client", ["eglot", "lsp-mode"])
def test_the_server_warms_where_point_comes_to_rest(
    tmp_path: Path, tiny_model_dir: Path, client: str
) -> None:
    """Point moved to another line: one `codetailor/cursor` once it rests, and a warm there."""
    if not emacs_has(client):
        pytest.skip(f"no {client} for this Emacs")
    server, path = server_not_on_path(tmp_path)
    project = tmp_path / "project"
    project.mkdir()
    # Long enough that the window at the top is not the one opening warmed (at the end).
    (project / "long.py").write_text("".join(f"value_{i} = {i}\n" for i in range(60)))
    setup = [
        f'(load "{CLIENTS}/codetailor-{client}.el")',
        f'(setq codetailor-command \'({elisp(str(server))} "serve"'
        f' "--model" {elisp(str(tiny_model_dir))}))',
    ]
    result, _, _ = run_emacs(
        tmp_path,
        path,
        setup,
        f'(codetailor-e2e-cursor \'{client} {elisp(str(project / "long.py"))} "C-n C-n C-e")',
    )
    before, after = result["before"], result["after"]
    assert result["line"] == 3
    # Three moves while typing, one report: sent once point rested, on its new line.
    assert after["cursors"] - before["cursors"] == 1, result
    assert after["warms"] - before["warms"] == 1, result  # the window at line 3 was new
    assert after["warmsDone"] > before["warmsDone"], result


FAKE_SERVER = REPO / "editors" / "neovim" / "tests" / "fake_server.py"
SCALE = "def scale(x, factor):\n    a = 1\n    b = 2\n    return x * factor\n"
RENAMED = SCALE.replace("(x, factor)", "(x, k)")


def next_edit_in_emacs(
    tmp_path: Path, client: str, command: list[str], path: str
) -> dict[str, Any]:
    """Run the driver's next-edit scenario (rename, C-g, TAB, TAB) on scale.py; its JSON."""
    if not emacs_has(client):
        pytest.skip(f"no {client} for this Emacs")
    project = tmp_path / "project"
    project.mkdir()
    (project / "scale.py").write_text(SCALE)
    setup = [
        f'(load "{CLIENTS}/codetailor-{client}.el")',
        f"(setq codetailor-command '({' '.join(elisp(c) for c in command)}))",
        "(setq codetailor-settings (plist-put codetailor-settings :nextEditDebounceMs 50))",
    ]
    call = f"(codetailor-e2e-next-edit '{client} {elisp(str(project / 'scale.py'))})"
    result, _, _ = run_emacs(tmp_path, path, setup, call, timeout=180)
    assert result["point_kept"] is True
    assert result["tab_before"] != "codetailor-next-edit-tab", result  # TAB is the user's
    assert result["tab_shown"] == "codetailor-next-edit-tab"
    assert result["after_dismiss"] is None
    assert result["text_after_jump"] == RENAMED  # jumped, not applied
    assert result["text_after_apply"] == RENAMED.replace("x * factor", "x * k")
    assert result["after_apply"] is None
    assert result["tab_after"] != "codetailor-next-edit-tab"
    return result


@pytest.mark.parametrize("client", ["eglot", "lsp-mode"])
def test_next_edit_below_is_drawn_then_tab_jumps_then_tab_applies(
    tmp_path: Path, client: str
) -> None:
    """After renaming `factor` on line 1, the (fake) server's next edit three lines below is
    drawn with overlays while point stays; C-g hides it, TAB jumps, TAB applies."""
    log = tmp_path / "fake.log"
    command = [sys.executable, str(FAKE_SERVER), "serve", "--completion", ""]
    command += ["--next-edit", "x * factor=>x * k", "--log", str(log)]
    result = next_edit_in_emacs(tmp_path, client, command, os.environ.get("PATH", ""))
    assert result["drawn"] == ["x * factor", "x * k"], result  # struck, then the new text
    assert result["jumped_to"] == [4, len("    return ")]
    messages = [json.loads(line) for line in log.read_text().splitlines()]
    shown = [m for m in messages if m.get("method") == "textDocument/didShowInlineEdit"]
    assert shown and shown[0]["params"]["item"]["text"] == "x * k"
    asked = [m for m in messages if m.get("method") == "textDocument/copilotInlineEdit"]
    assert all(isinstance(m["params"]["textDocument"]["version"], int) for m in asked)
    commands = [m["params"] for m in messages if m.get("method") == "workspace/executeCommand"]
    accepted = [c for c in commands if c["command"] == "codetailor.acceptedNextEdit"]
    assert [c["arguments"] for c in accepted] == [["fake-edit-1"]], commands
    dismissed = [m["params"] for m in messages if m.get("method") == "codetailor/dismissed"]
    assert dismissed == [{"id": "fake-edit-1", "reason": "dismiss"}], dismissed  # C-g


@pytest.mark.parametrize("client", ["eglot", "lsp-mode"])
def test_real_server_next_edit_jump_and_apply(
    tmp_path: Path, tiny_model_dir: Path, client: str
) -> None:
    """The whole path: the real server builds the next-edit prompt from the edits and the
    scripted engine (tests/e2e/scripted_engine.py) writes the updated window."""
    server, path = server_not_on_path(tmp_path)
    with ScriptedEngine() as engine:
        engine.next_edit(
            "current/scale.py\ndef scale(x, k):", RENAMED.replace("x * factor", "x * k")
        )
        command = [str(server), "serve", "--model", str(tiny_model_dir)]
        command += ["--engine", f"openai:{engine.url}"]
        result = next_edit_in_emacs(tmp_path, client, command, path)
    assert result["drawn"] == ["factor", "k"], result  # the minimal edit
    assert result["jumped_to"] == [4, len("    return x * ")]
    assert result["counts"]["accepted"] == 1 and result["counts"]["displayed"] >= 1, result


@pytest.mark.parametrize(
    ("client", "feature"),
    [("eglot", "eglot"), ("lsp-mode", "lsp-mode")],
)
def test_a_missing_server_command_says_how_to_fix_it(
    tmp_path: Path, client: str, feature: str
) -> None:
    if not emacs_has(feature):
        pytest.skip(f"no {feature} for this Emacs")
    (tmp_path / "add.py").write_text(TEXT)
    missing = tmp_path / "no-venv" / "bin" / "codetailor"
    setup = [
        f'(load "{CLIENTS}/codetailor-{client}.el")',
        f'(setq codetailor-command \'({elisp(str(missing))} "serve"))',
    ]
    result, _, _ = run_emacs(
        tmp_path,
        os.environ.get("PATH", ""),
        setup,
        f"(codetailor-e2e-missing-command '{client} {elisp(str(tmp_path / 'add.py'))})",
        timeout=60,
    )
    said = [result["error"] or "", *result["messages"]]
    expected = f'Codetailor: server command "{missing}" not found; set `codetailor-command\''
    assert any(line.startswith(expected) for line in said), said
