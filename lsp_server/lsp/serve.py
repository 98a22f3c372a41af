"""`codetailor serve`: check the address and token, then serve stdio or TCP connections.

Every connection gets its own `CodetailorServer` (a fresh `Session`: settings,
documents, shown completions) and its own lifecycle gate, made when it starts
and dropped in `finally` however it ends; the `ModelHost` is made once and
outlives them. On TCP one admitted client is served at a time, and only an
admitted one holds that place: until it has sent a valid `initialize` (within
the auth deadline) a connection holds nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import stat
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from lsp_server.errors import CodetailorError
from lsp_server.lsp import client_log, handlers, terminal, transport
from lsp_server.lsp.lifecycle import Lifecycle
from lsp_server.lsp.server import CodetailorServer, ModelEvents
from lsp_server.model.host import ModelHost
from lsp_server.session.settings import PARSERS, Settings
from lsp_server.spec import ModelSpec

log = logging.getLogger("codetailor.launch")

TOKEN_ENV = "CODETAILOR_AUTH_TOKEN"


@dataclass(frozen=True)
class Limits:
    """A TCP connection's deadlines, in seconds (None: no limit)."""

    auth_timeout: float | None = 10.0  # from connecting to a valid `initialize`
    idle_timeout: float | None = 3600.0  # the longest wait for a message once initialized
    client_wait: float = 2.0  # how long an admitted client waits for the previous one to go


def parse_tcp(spec: str) -> tuple[str, int]:
    """HOST:PORT, :PORT or PORT; the host defaults to 127.0.0.1."""
    host, _, port = spec.rpartition(":")
    if not port.isdigit() or int(port) > 65535:
        raise CodetailorError(f"--tcp expects HOST:PORT (e.g. 127.0.0.1:7070), got '{spec}'")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token_file(path: Path) -> str:
    """The token in `path` (surrounding whitespace removed); refused if others may read it."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise CodetailorError(
                f"--auth-token-file {path} is readable by other users "
                f"(mode {stat.S_IMODE(mode):o}); run: chmod 600 {path}"
            )
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CodetailorError(f"cannot read --auth-token-file {path}: {exc}") from None
    if not token:
        raise CodetailorError(f"--auth-token-file {path} is empty")
    return token


def resolve_token(args: argparse.Namespace) -> str | None:
    """The token from --auth-token-file, --auth-token (with a warning) or the environment."""
    path: Path | None = getattr(args, "auth_token_file", None)
    if path is not None and args.auth_token:
        raise CodetailorError("pass --auth-token-file or --auth-token, not both")
    if path is not None:
        return read_token_file(path)
    if args.auth_token:
        log.warning(
            "--auth-token is visible to every local user in the process list; "
            "prefer %s or --auth-token-file",
            TOKEN_ENV,
        )
        return args.auth_token
    return os.environ.get(TOKEN_ENV) or None


def limits_from(args: argparse.Namespace) -> Limits:
    def seconds(value: float | None, default: float | None) -> float | None:
        if value is None:
            return default
        return value if value > 0 else None  # 0: no limit

    defaults = Limits()
    return Limits(
        auth_timeout=seconds(getattr(args, "auth_timeout", None), defaults.auth_timeout),
        idle_timeout=seconds(getattr(args, "idle_timeout", None), defaults.idle_timeout),
    )


QUIETNESS_ENV = "CODETAILOR_QUIETNESS"


def startup_quietness(flag: int | None) -> int:
    """The quietness until the editor sets one: --quietness, else $CODETAILOR_QUIETNESS,
    else the setting's default; a value the setting refuses is one clear error."""
    raw = str(flag) if flag is not None else os.environ.get(QUIETNESS_ENV, "").strip()
    if not raw:
        return Settings().quietness
    try:
        return int(PARSERS["quietness"](int(raw) if raw.lstrip("-").isdigit() else raw))
    except ValueError as exc:
        where = "--quietness" if flag is not None else QUIETNESS_ENV
        raise CodetailorError(f"{where}: {exc}, got {raw!r}") from None


def serve(args: argparse.Namespace) -> int:
    if args.verbose < 2:  # pygls logs every message it sends at INFO: documents included
        pygls_log = logging.getLogger("pygls")
        pygls_log.setLevel(max(pygls_log.level, logging.WARNING))
    address = parse_tcp(args.tcp) if args.tcp else None
    token = resolve_token(args)
    if address and not is_loopback(address[0]) and not token:
        raise CodetailorError(
            f"refusing to listen on {address[0]} (reachable from other machines) without a "
            f"token: set {TOKEN_ENV} or pass --auth-token-file FILE, or bind 127.0.0.1"
        )
    startup = Settings(
        model=args.model,
        adapter=args.adapter,
        device=args.device,
        dtype=args.dtype,
        engine=getattr(args, "engine", None) or "local",
        quietness=startup_quietness(getattr(args, "quietness", None)),
    )
    events = ModelEvents()
    loading = ModelSpec(
        trust_remote_code=args.trust_remote_code, compile=getattr(args, "compile", "auto")
    )
    notes = terminal.TerminalNotes() if terminal.wanted(tcp=bool(address)) else None
    on_event = terminal.tee(initialized_only(events), notes.event) if notes else events
    host = ModelHost(on_event)
    if notes:  # a person watches: say what this is and load now, to say when it is ready
        announce(notes, startup, address, host, loading)
    # On stdio the client started us and chose the command line: its settings are as
    # trusted as --model. On TCP anyone on the machine may be the client.
    allow = bool(getattr(args, "allow_client_models", False)) or not address
    make = partial(
        CodetailorServer,
        startup,
        host,
        register=handlers.register,
        allow_client_models=allow,
        allow_client_engines=bool(getattr(args, "allow_client_engines", False)) or not address,
        loading=loading,
    )
    if address:
        # A token guards TCP only: on stdio the editor that started us owns both pipes.
        return asyncio.run(serve_tcp(make, events, token, *address, limits_from(args)))
    quiet = not args.verbose  # -v: stderr keeps the log while an editor is connected too
    status = asyncio.run(serve_stdio(make, events, quiet_stderr=quiet, notes=notes))
    # The editor has gone: leave now, without the seconds torch's teardown takes
    # and without waiting for a generation thread to notice its cancel flag.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(status)


def initialized_only(events: ModelEvents) -> Callable[[str, str, int | None], None]:
    """`events`, passed on only once the client has initialized: the startup load on a
    terminal must not send LSP messages (onto the terminal) before anyone connected."""

    def forward(kind: str, message: str, percentage: int | None) -> None:
        client = events.client
        if getattr(getattr(client, "protocol", None), "client_capabilities", None) is not None:
            events(kind, message, percentage)

    return forward


def announce(
    notes: terminal.TerminalNotes,
    startup: Settings,
    address: tuple[str, int] | None,
    host: ModelHost,
    loading: ModelSpec,
) -> None:
    """Tell the person at the terminal what this is, and load the startup model now (the
    first client's settings find it loading or ready, as a later client's do)."""
    from lsp_server.model import registry
    from lsp_server.model.loading import DEFAULT_MODEL
    from lsp_server.model.shipped import shipped_adapter
    from lsp_server.session.adapter_choice import choose_adapter
    from lsp_server.session.model_choice import model_spec
    from lsp_server.session.settings import parse_engine

    where = f"{address[0]}:{address[1]}" if address else None
    what = "a code-completion language server (LSP)"
    model = startup.model or DEFAULT_MODEL
    notes.banner(what, model, startup.device, startup.dtype, where)
    terminal.watch_stages(notes)
    # What the session asks for with these settings before it knows a workspace folder.
    choice = choose_adapter(
        startup.adapter,
        None,
        None,
        command_line=startup.adapter,
        resolve=registry.resolve_adapter,
        general=shipped_adapter(startup.model) if parse_engine(startup.engine) is None else None,
    )
    if choice.ref is not None:  # a client's workspace may choose its repository's later
        notes.say(f"adapter {choice.adapter} ({choice.reason})")
    host.load(model_spec(startup, loading), [choice.ref])


async def serve_stdio(
    make: Callable[[], CodetailorServer],
    events: ModelEvents,
    *,
    quiet_stderr: bool = True,
    notes: terminal.TerminalNotes | None = None,
) -> int:
    """Serve the editor on stdin/stdout; `quiet_stderr`: once it has initialized, logs go
    to it only (editors show stderr as errors); `notes`: a person is at the terminal."""
    server = make()
    server.loop = asyncio.get_running_loop()
    events.client = server
    client_log.install(server, quiet_stderr=quiet_stderr)
    out = transport.protocol_stdout()
    writer = transport.SafeWriter(lambda data: out.write(data), out.close)
    chunks = transport.stdin_chunks(server.loop, sys.stdin.fileno())
    if notes is not None:
        chunks = _watched(chunks, notes.typed)
    reader = transport.FrameReader(chunks)
    connection = transport.Connection(server.protocol, writer, Lifecycle(None))
    try:
        status = await transport.run_connection(connection, reader)
    finally:
        server.close()
    if status is None:
        log.info("the client closed stdin; exiting")
    return status or 0


def _watched(
    read: Callable[[], Awaitable[bytes]], seen: Callable[[bytes], None]
) -> Callable[[], Awaitable[bytes]]:
    """`read`, with every chunk also shown to `seen`."""

    async def chunk() -> bytes:
        data = await read()
        seen(data)
        return data

    return chunk


def keep_alive(sock: socket.socket | None) -> None:
    """TCP keepalive: a peer that vanished without a word (a dropped network) is noticed
    in about two minutes, not at the idle timeout, so it does not hold the client slot."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in (("TCP_KEEPIDLE", 60), ("TCP_KEEPINTVL", 15), ("TCP_KEEPCNT", 4)):
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


class TcpClients:
    """Accepts TCP connections; each gets a fresh server, and one admitted at a time is served."""

    def __init__(
        self,
        make: Callable[[], CodetailorServer],
        events: ModelEvents,
        token: str | None,
        limits: Limits,
    ) -> None:
        self.make, self.events, self.token, self.limits = make, events, token, limits
        self.slot = asyncio.Lock()
        # One log forwarder, pointed at whichever client is admitted (a TCP client does
        # not see our stderr, so stderr keeps everything too).
        self.log = client_log.install(None, quiet_stderr=False)
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        keep_alive(writer.get_extra_info("socket"))
        server = self.make()
        server.loop = asyncio.get_running_loop()
        safe = transport.SafeWriter(writer.write, writer.close)
        holding = False

        async def admit() -> bool:
            nonlocal holding
            try:  # the previous client may be a moment away from noticing its own hang-up
                await asyncio.wait_for(self.slot.acquire(), self.limits.client_wait)
            except TimeoutError:
                log.warning("refusing a second client while one is connected")
                return False
            holding = True
            self.events.client = server
            self.log.server = server
            return True

        connection = transport.Connection(
            server.protocol,
            safe,
            Lifecycle(self.token),
            admit,
            self.limits.auth_timeout,
            self.limits.idle_timeout,
        )
        frames = transport.FrameReader(lambda: reader.read(65536), strict=True)
        status = None
        try:
            status = await transport.run_connection(connection, frames)
        finally:  # whatever ended the connection, nothing of it is left for the next one
            safe.close()
            server.close()
            if self.events.client is server:
                self.events.client = None
            if self.log.server is server:
                self.log.server = None
            if holding:
                self.slot.release()
        if status is not None and not self.done.done():
            self.done.set_result(status)  # `exit` from an admitted client stops the server


async def serve_tcp(
    make: Callable[[], CodetailorServer],
    events: ModelEvents,
    token: str | None,
    host: str,
    port: int,
    limits: Limits,
) -> int:
    """Serve TCP clients until an admitted one sends `exit`; the model stays loaded between."""
    clients = TcpClients(make, events, token, limits)
    listener = await asyncio.start_server(clients.on_client, host, port)
    bound = listener.sockets[0].getsockname()
    print(f"codetailor: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    async with listener:
        return await clients.done
