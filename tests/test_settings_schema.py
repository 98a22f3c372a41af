"""The editor clients offer the server's settings: same names, defaults, bounds and choices.

`lsp_server.session.settings.schema()` is the one description; VS Code's
package.json and settings.ts and Neovim's config.lua each keep their own table
(their users read those), and this test keeps all of them equal to it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lsp_server.session.settings import schema

EDITORS = Path(__file__).resolve().parents[1] / "editors"
SCHEMA = schema()
# Client-only settings (how to start the server, the TCP token, how a next edit is drawn):
# not server settings.
# The extension's own settings (the server never sees them); the first three start the
# server or reach it, so a workspace may not set them either.
CLIENT_MACHINE = {"serverCommand", "serverArgs", "authToken"}
CLIENT_ONLY = CLIENT_MACHINE | {"nextEditIndicatorOnly"}


def snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def editor_default(value: Any) -> Any:
    """A server default as an editor spells it: unset strings are "" (VS Code) or nil."""
    return "" if value is None else value


def test_package_json_offers_every_setting_with_the_same_default_and_bounds() -> None:
    manifest = json.loads((EDITORS / "vscode" / "package.json").read_text())
    offered = {
        key.removeprefix("codetailor."): spec
        for key, spec in manifest["contributes"]["configuration"]["properties"].items()
    }
    assert set(offered) - CLIENT_ONLY == set(SCHEMA)
    for name, spec in SCHEMA.items():
        ours = offered[name]
        assert ours["type"] == spec["type"], name
        assert ours["default"] == editor_default(spec["default"]), name
        assert (ours.get("minimum"), ours.get("maximum")) == (
            spec.get("minimum"),
            spec.get("maximum"),
        ), name
        if "enum" in ours:  # the editor may offer fewer spellings (no aliases), never others
            assert set(ours["enum"]) <= set(spec.get("enum", ())), name


def test_vscode_settings_ts_has_the_same_defaults_and_bounds() -> None:
    source = (EDITORS / "vscode" / "src" / "settings.ts").read_text()
    defaults = source[source.index("export const DEFAULTS") :]
    defaults = defaults[: defaults.index("});")]
    for name, spec in SCHEMA.items():
        match = re.search(rf"^\s*{name}: (.+),$", defaults, re.MULTILINE)
        assert match, f"settings.ts DEFAULTS lacks {name}"
        assert json.loads(match.group(1)) == editor_default(spec["default"]), name
        if "minimum" in spec:
            bounds = re.search(rf'pick\("{name}", num\(([\d_]+), ([\d_]+)\)\)', source)
            assert bounds, f"settings.ts does not bound {name}"
            low, high = (int(b.replace("_", "")) for b in bounds.groups())
            assert (low, high) == (spec["minimum"], spec["maximum"]), name


@pytest.mark.parametrize("name", sorted(SCHEMA))
def test_neovim_config_lua_has_the_same_default_and_bounds(name: str) -> None:
    source = (EDITORS / "neovim" / "lua" / "codetailor" / "config.lua").read_text()
    spec, key = SCHEMA[name], snake(name)
    block = source[source.index("  settings = {") :]
    block = block[: block.index("  },")]
    match = re.search(rf"^\s*{key} = (.+),$", block, re.MULTILINE)
    assert match, f"config.lua settings lack {key}"
    lua = match.group(1).strip()
    expected = {None: "nil", True: "true", False: "false"}.get(spec["default"], spec["default"])
    if isinstance(expected, str) and expected not in ("nil", "true", "false"):
        expected = json.dumps(expected)
    assert lua == str(expected), key
    assert re.search(rf'\b{name}\b = "{name}"|\b{key} = "{name}"', source), f"no wire name {key}"
    if "minimum" in spec:
        check = re.search(rf'"settings\.{key}", whole\((\d+), (\d+)\)', source)
        assert check and (int(check[1]), int(check[2])) == (spec["minimum"], spec["maximum"])
    if "enum" in spec and name != "device":
        check = re.search(rf'"settings\.{key}", one_of\(([^)]*)\)', source)
        assert check, f"config.lua does not check {key}"
        assert set(json.loads(f"[{check[1]}]")) <= set(spec["enum"]), key


MACHINE = {name for name, spec in SCHEMA.items() if spec.get("scope") == "machine"}


def test_settings_that_reach_the_network_or_load_code_are_the_users_alone() -> None:
    """`engine`, `model` and `adapter` send code somewhere or load weights: machine-scoped
    in the schema, in package.json, and in each client's list of keys a workspace may not set."""
    assert {"engine", "model", "adapter"} <= MACHINE
    manifest = json.loads((EDITORS / "vscode" / "package.json").read_text())
    properties = manifest["contributes"]["configuration"]["properties"]
    for name in SCHEMA:
        scope = properties[f"codetailor.{name}"].get("scope")
        assert (scope == "machine") == (name in MACHINE), name
    source = (EDITORS / "vscode" / "src" / "settings.ts").read_text()
    listed = re.search(r"export const MACHINE_KEYS = \[([^\]]*)\]", source)
    assert listed and set(json.loads(f"[{listed[1]}]")) == MACHINE | CLIENT_MACHINE
    lua = (EDITORS / "neovim" / "lua" / "codetailor" / "config.lua").read_text()
    listed = re.search(r"M\.MACHINE = \{([^}]*)\}", lua)
    assert listed and set(re.findall(r"\"(\w+)\"", listed[1])) == {snake(n) for n in MACHINE}
    elisp = (EDITORS / "emacs" / "codetailor.el").read_text()
    listed = re.search(r"\(defconst codetailor--machine-keys '\(([^)]*)\)", elisp)
    assert listed and set(listed[1].split()) == {f":{n}" for n in MACHINE}
