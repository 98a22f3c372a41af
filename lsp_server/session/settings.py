"""The server's settings: a typed dataclass inside, camelCase JSON on the wire.

Settings arrive in `initializationOptions` and `workspace/didChangeConfiguration`,
either flat or under a `codetailor` section (as VS Code sends them). Parsing is
pure: it returns the new settings and a list of problems, one line each; a bad
value keeps the previous (or default) value. Imports neither pygls nor torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lsp_server.completion.next_edit_prompt import NEXT_EDIT_FORMATS
from lsp_server.completion.scope import Mode

Multiline = Literal["auto", "always", "never"]
MULTILINE_TO_MODE: dict[str, Mode] = {"auto": "auto", "always": "block", "never": "line"}
MULTILINE = tuple(MULTILINE_TO_MODE)
DEVICES = ("auto", "cpu", "cuda", "mps", "xpu")
DTYPES = ("auto", "float32", "bfloat16", "float16", "fp32", "bf16", "fp16", "int8", "int4")
SECTION = "codetailor"
# A quiet two-core CPU engine (`transformers serve`, SmolLM2-135M) prefills the
# first 1,024-token window in 2-4 s (docs/benchmarks.md, "A slow remote engine");
# twice that leaves room for a busy moment, and the window shrinks to fit later ones.
FIRST_TOKEN_TIMEOUT_MS = 8000
# Keys the client may send that are not settings (read elsewhere, or ignored quietly).
# `initializationOptions` keys that are not settings: the TCP token, and what the client
# says of itself (`drawsNextEdits`: it asks for next edits and draws them, see
# `client_draws_next_edits`).
NOT_SETTINGS = frozenset({"authToken", "drawsNextEdits"})


def client_draws_next_edits(options: Any) -> bool:
    """Whether the client said, in `initializationOptions`, that it asks for next edits
    (`textDocument/copilotInlineEdit`) and draws them itself, as the Codetailor plugins
    do; a client that did not gets a same-line next edit as an inline completion where a
    completion comes back empty."""
    return settings_section(options).get("drawsNextEdits") is True


# The scope of a setting that reaches the network, loads code or weights, or names files
# (VS Code's word): only the user's own settings may set it, never a workspace's (a
# repository ships `.vscode/settings.json`, `.dir-locals.el`, `.nvim.lua`). Each client
# reads these keys from the user's settings alone; `promptFormat` only picks a built-in
# template, so a workspace may still set it.
MACHINE = "machine"


@dataclass(frozen=True)
class Settings:
    """What the user can change while the server runs."""

    model: str | None = field(
        default=None, metadata={"help": "model spec; None: the default", "scope": MACHINE}
    )
    adapter: str | None = field(
        default="auto",
        metadata={
            "help": "auto (the adapter registered for the workspace's repository, else none), "
            "none (the base model), or a LoRA adapter folder or registered name",
            "scope": MACHINE,
        },
    )
    device: str = field(
        default="auto", metadata={"help": "auto, cpu, cuda[:N], mps", "enum": DEVICES}
    )
    dtype: str = field(
        default="auto",
        metadata={"help": "auto, float32, bfloat16, float16, int8 or int4 (CPU)", "enum": DTYPES},
    )
    max_tokens: int = field(
        default=64, metadata={"help": "most tokens per completion", "minimum": 1, "maximum": 1024}
    )
    multiline: Multiline = field(
        default="auto", metadata={"help": "how much to complete", "enum": MULTILINE}
    )
    time_budget_ms: int = field(
        default=2000,
        metadata={
            "help": "milliseconds of decoding per completion, from its first token",
            "minimum": 50,
            "maximum": 60_000,
        },
    )
    first_token_timeout_ms: int = field(
        default=FIRST_TOKEN_TIMEOUT_MS,
        metadata={
            "help": "most milliseconds to the first token (the prompt's prefill); a remote "
            "engine's prompt window shrinks to fit it",
            "minimum": 100,
            "maximum": 120_000,
        },
    )
    enable: bool = field(default=True, metadata={"help": "answer completion requests at all"})
    prompt_format: str | None = field(default=None, metadata={"help": "override the FIM format"})
    context: bool = field(
        default=True, metadata={"help": "add snippets of other workspace files to the prompt"}
    )
    engine: str = field(
        default="local",
        metadata={
            "help": "local, or openai:http(s)://HOST:PORT for an OpenAI-compatible server",
            "scope": MACHINE,
        },
    )
    feedback: bool = field(
        default=True,
        metadata={"help": "keep a local log of shown and accepted suggestions (never sent)"},
    )
    quietness: int = field(
        default=25,
        metadata={
            "help": "show a completion or next edit only when it is this likely (percent) to be "
            "accepted, "
            "as the repository's learned filter (or the global rule) judges: 25 is the "
            "break-even of a reward of 0.75 for an accepted suggestion, -0.25 for a rejected "
            "one and 0 for silence (Cursor Tab's); 0 shows every suggestion",
            "minimum": 0,
            "maximum": 95,
        },
    )
    next_edit: bool = field(
        default=True, metadata={"help": "suggest the next edit near the cursor (next edits)"}
    )
    next_edit_debounce_ms: int = field(
        default=300,
        metadata={
            "help": "how long the editor waits after an edit before asking for the next one",
            "minimum": 0,
            "maximum": 10_000,
        },
    )
    next_edit_window_lines: int = field(
        default=10,
        metadata={
            "help": "most lines above and below the cursor a next edit may touch "
            "(a CPU uses at most 5: see docs/benchmarks.md, next edits)",
            "minimum": 1,
            "maximum": 100,
        },
    )
    next_edit_format: str | None = field(
        default=None,
        metadata={
            "help": "the next-edit prompt layout (empty: sweep, with the model's file separator)",
            "enum": tuple(NEXT_EDIT_FORMATS),
        },
    )

    @property
    def mode(self) -> Mode:
        """The Completer's mode for the `multiline` setting."""
        return MULTILINE_TO_MODE[self.multiline]

    def to_wire(self) -> dict[str, Any]:
        return {camel(f.name): getattr(self, f.name) for f in dataclasses.fields(self)}


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


WIRE_NAMES = {camel(f.name): f.name for f in dataclasses.fields(Settings)}


def parse_engine(spec: str | None) -> str | None:
    """The server URL of an `engine` value: None for `local`, the URL (without a trailing
    slash) for `openai:http(s)://...`; ValueError, naming the accepted forms, otherwise."""
    text = (spec or "local").strip()
    if text.lower() == "local":
        return None
    scheme, _, url = text.partition(":")
    url = url.strip().rstrip("/")
    host = url.split("://", 1)[1] if "://" in url else ""
    if scheme.lower() == "openai" and url.lower().startswith(("http://", "https://")) and host:
        return url
    raise ValueError(f"expected local or openai:http(s)://HOST:PORT, got '{text}'")


def _engine(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a string")
    url = parse_engine(value)
    return f"openai:{url}" if url else "local"


def _optional_text(value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str):
        raise ValueError("expected a string")
    return value.strip()


MAX_SPEC_CHARS = 1024
MAX_NAME_CHARS = 255  # a file name's limit on the usual file systems


def _spec(value: Any) -> str | None:
    """A model or adapter value: a name, id or path of sane length, without control
    characters (a client over TCP may send anything; a path part over 255 characters
    fails in the file system, not here with a message)."""
    text = _optional_text(value)
    if text is None:
        return None
    if len(text) > MAX_SPEC_CHARS or any(len(p) > MAX_NAME_CHARS for p in text.split("/")):
        raise ValueError(
            f"too long (at most {MAX_SPEC_CHARS} characters, {MAX_NAME_CHARS} per path part)"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ValueError("control characters are not allowed")
    return text


def _choice(choices: tuple[str, ...], *, prefix_ok: bool = False) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        text = value.strip().lower()
        base = text.split(":", 1)[0] if prefix_ok else text
        if base not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return check


def _int_in(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        # JSON has one number type; 64.0 is fine, 64.5 and true are not.
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        if value != int(value) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}")
        return int(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("expected true or false")
    return value


def _parser(f: dataclasses.Field[Any]) -> Callable[[Any], Any]:
    """The value check for one setting, from its type and the bounds in its metadata."""
    meta = f.metadata
    if "minimum" in meta:
        return _int_in(int(meta["minimum"]), int(meta["maximum"]))
    if "enum" in meta:
        return _choice(tuple(str(c) for c in meta["enum"]), prefix_ok=f.name == "device")
    if f.type == "bool":
        return _bool
    return _optional_text


PARSERS = {f.name: _parser(f) for f in dataclasses.fields(Settings)} | {
    "engine": _engine,
    "model": _spec,
    "adapter": _spec,
}


def schema() -> dict[str, dict[str, Any]]:
    """Each setting by its wire name: type, default, bounds or choices, help.

    The one description of the settings; the editor clients' own tables
    (VS Code's package.json and settings.ts, Neovim's config.lua) are checked
    against it by a test.
    """
    kinds = {"int": "integer", "bool": "boolean"}
    out: dict[str, dict[str, Any]] = {}
    for f in dataclasses.fields(Settings):
        entry = {"type": kinds.get(str(f.type), "string"), "default": f.default}
        entry |= {k: v for k, v in f.metadata.items() if k != "help"}
        out[camel(f.name)] = entry | {"help": f.metadata.get("help", "")}
    return out


def machine_scoped() -> frozenset[str]:
    """The wire names of the settings that a workspace's configuration may not set."""
    return frozenset(name for name, spec in schema().items() if spec.get("scope") == MACHINE)


def settings_section(raw: Any) -> Mapping[str, Any]:
    """The settings object inside what a client sent: flat, or under `codetailor`."""
    if not isinstance(raw, Mapping):
        return {}
    inner = raw.get(SECTION)
    return inner if isinstance(inner, Mapping) else raw


def unknown_keys(raw: Any) -> list[str]:
    """Keys in what a client sent that are not settings (ignored, and logged by the server)."""
    section = settings_section(raw)
    return [k for k in section if k not in WIRE_NAMES and k not in NOT_SETTINGS and k != SECTION]


def parse_settings(
    raw: Any, base: Settings, defaults: Settings | None = None
) -> tuple[Settings, list[str]]:
    """Apply the camelCase keys in `raw` on top of `base`.

    Returns the new settings and one message per invalid value;
    an invalid value leaves that setting as it was in `base`. A key set to null
    goes back to its value in `defaults` (the command line's, for the server).
    """
    problems: list[str] = []
    if raw is not None and not isinstance(raw, Mapping):
        return base, [f"settings must be a JSON object, got {type(raw).__name__}"]
    changes: dict[str, Any] = {}
    defaults = defaults or Settings()
    for key, value in settings_section(raw).items():
        name = WIRE_NAMES.get(key)
        if name is None:  # another tool's section, or a typo: see `unknown_keys`
            continue
        if value is None:
            changes[name] = getattr(defaults, name)
            continue
        try:
            changes[name] = PARSERS[name](value)
        except ValueError as exc:
            shown = getattr(base, name)
            problems.append(f"setting '{key}': {value!r} is invalid ({exc}); using {shown!r}")
    return dataclasses.replace(base, **changes), problems
