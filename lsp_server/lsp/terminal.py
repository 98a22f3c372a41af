"""What `codetailor serve` says to a person at a terminal (on stderr, never on stdout).

An editor starts the server itself and talks LSP on its stdin/stdout; a person
who runs `codetailor serve` (or `make serve`) in a terminal saw nothing at all.
When stdin is a terminal (or, with `--tcp`, stderr is), `TerminalNotes` says
what the server is, loads the model at once and shows that with progress, says
"ready" with the time, and how to connect VS Code, Neovim or Emacs. Typing at
the terminal gets one line saying that is not the way. An editor's session
(stdin a pipe) sees none of this: stdout carries only the protocol, and stderr,
which editors show as errors, stays as it was.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from lsp_server import __version__

PREFIX = "codetailor: "
TICK_S = 1.0  # how often the loading line's clock moves, on a terminal

CONNECT = """\
connect an editor (it starts `codetailor serve` itself and talks LSP on stdin/stdout):
  VS Code  cd editors/vscode && npm ci && npm run package && code --install-extension \
codetailor.vsix
  Neovim   vim.opt.runtimepath:prepend("<repo>/editors/neovim")
           require("codetailor").setup({ cmd = { "<repo>/.venv/bin/codetailor", "serve" } })
  Emacs    (load "<repo>/editors/emacs/codetailor-eglot.el") then M-x eglot
  other    any LSP client: command `codetailor serve` (stdio), or run
           `codetailor serve --tcp 127.0.0.1:7070` and connect to that port
  try it   codetailor complete FILE:LINE:COL   (one completion, no editor)"""

WAITING_STDIO = (
    "this is a language server: it waits for an editor on stdin; typing here does nothing "
    "(Ctrl-C stops it)"
)
TYPED = "that is not LSP: an editor talks to this server, not a person (Ctrl-C stops it)"


def connect_lines() -> list[str]:
    """The connect hints, with this checkout's path where it has the editors' folders."""
    repo = Path(__file__).resolve().parents[2]
    where = str(repo) if (repo / "editors").is_dir() else "<codetailor checkout>"
    return CONNECT.replace("<repo>", where).splitlines()


def wanted(tcp: bool, stdin: Any = None, stderr: Any = None) -> bool:
    """Whether a person is watching: stdin is a terminal (stdio), or stderr is (TCP)."""
    stream = (stderr or sys.stderr) if tcp else (stdin or sys.stdin)
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class TerminalNotes:
    """The lines a person reads: what this is, loading with its progress, ready, connect."""

    def __init__(self, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic):
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self._lock = threading.Lock()
        self._loading: str | None = None  # the stage shown while loading, else None
        self._since = self.started
        self._live = _isatty(self.stream)  # a terminal: the loading line keeps its clock
        self._typed_told = False
        self._shown = False  # the clock's line is on the screen
        self._ticker: threading.Thread | None = None

    def say(self, line: str) -> None:
        with self._lock:
            self._clear_live()
            print(PREFIX + line, file=self.stream, flush=True)

    def banner(self, what: str, model: str, device: str, dtype: str, where: str | None) -> None:
        """What it is and what it is about to load; `where`: the TCP address, None on stdio."""
        self.say(f"Codetailor {__version__}, {what}")
        self.say(f"model {model}, device {device}, dtype {dtype}")
        if where is None:  # on TCP, serve_tcp says where it listens once it does
            self.say(WAITING_STDIO)

    def event(self, kind: str, message: str, percentage: int | None) -> None:
        """A model host event (from its loader thread), as a line with the time it took."""
        seconds = self.clock() - self.started
        if kind == "begin":
            self._since = self.clock()
            self._show_stage(message)
        elif kind == "report":
            self._show_stage(message + (f" ({percentage}%)" if percentage is not None else ""))
        elif kind == "end":
            self._stop_stage()
            self.say(f"{message} (ready {seconds:.1f} s after start)")
            self.say_connect()
        elif kind == "failed":
            self._stop_stage()
            self.say(message)
        elif kind == "problem":
            self.say(f"warning: {message}")

    def say_connect(self) -> None:
        with self._lock:
            self._clear_live()
            for line in connect_lines():
                print(PREFIX + line, file=self.stream)
            self.stream.flush()

    def typed(self, chunk: bytes) -> None:
        """Something arrived on stdin: a person typing (not LSP) hears once how it works."""
        if chunk and b"Content-Length" not in chunk and not self._typed_told:
            self._typed_told = True
            self.say(TYPED)

    def _show_stage(self, stage: str) -> None:
        self.say(stage)
        with self._lock:
            self._loading = stage
        if self._live and self._ticker is None:
            ticker = threading.Thread(target=self._tick, name="codetailor-clock", daemon=True)
            self._ticker = ticker
            ticker.start()

    def _stop_stage(self) -> None:
        with self._lock:
            self._clear_live()
            self._loading = None

    def _tick(self) -> None:
        """On a terminal, one line under the stages shows the seconds loading has taken."""
        while True:
            time.sleep(TICK_S)
            with self._lock:
                if self._loading is None:
                    continue
                elapsed = self.clock() - self._since
                # The cursor goes back to the line's start: a log line written meanwhile
                # takes the clock's place instead of running on after it.
                self.stream.write(f"\r\x1b[K{PREFIX}loading... {elapsed:.0f} s\r")
                self.stream.flush()
                self._shown = True

    def _clear_live(self) -> None:
        if self._shown:  # the clock's line goes; the next line takes its place
            self.stream.write("\r\x1b[K")
            self._shown = False


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class StageLog(logging.Handler):
    """Shows the model loader's own stages (e.g. "converting ... to safetensors (once)")
    to the person watching, whatever the log level."""

    def __init__(self, notes: TerminalNotes) -> None:
        super().__init__(logging.INFO)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.INFO:
            self.notes.event("report", record.getMessage(), None)


def watch_stages(notes: TerminalNotes, logger: str = "codetailor.models") -> None:
    """Show `logger`'s INFO records (the loader's stages) through `notes`; the other
    handlers keep the level they showed before."""
    root = logging.getLogger()
    for handler in root.handlers:
        if handler.level == logging.NOTSET:
            handler.setLevel(root.level)
    stages = logging.getLogger(logger)
    stages.addHandler(StageLog(notes))
    if stages.getEffectiveLevel() > logging.INFO:
        stages.setLevel(logging.INFO)


def tee(*callbacks: Callable[[str, str, int | None], None]) -> Callable[..., None]:
    """One model host callback that hands each event to every one of `callbacks`."""

    def on_event(kind: str, message: str, percentage: int | None) -> None:
        for callback in callbacks:
            callback(kind, message, percentage)

    return on_event
