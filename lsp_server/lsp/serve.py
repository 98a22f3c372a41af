"""`codetailor serve`: check the address and token, then run the server on stdio or TCP."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys

from lsp_server.errors import CodetailorError
from lsp_server.lsp import client_log, transport
from lsp_server.lsp.server import CodetailorServer
from lsp_server.session.settings import Settings

log = logging.getLogger("codetailor.launch")

CLIENT_WAIT_S = 2.0  # how long a new TCP client waits for the previous one to finish


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


def serve(args: argparse.Namespace) -> int:
    if args.verbose < 2:  # pygls logs every message it sends at INFO: documents included
        logging.getLogger("pygls").setLevel(logging.WARNING)
    token = args.auth_token or os.environ.get("CODETAILOR_AUTH_TOKEN") or None
    address = parse_tcp(args.tcp) if args.tcp else None
    if address and not is_loopback(address[0]) and not token:
        raise CodetailorError(
            f"refusing to listen on {address[0]} (reachable from other machines) without a "
            "token: pass --auth-token TOKEN or set CODETAILOR_AUTH_TOKEN, or bind 127.0.0.1"
        )
    startup = Settings(model=args.model, adapter=args.adapter, device=args.device, dtype=args.dtype)
    # A token guards TCP only: on stdio the editor that started us owns both pipes.
    server = CodetailorServer(
        startup, auth_token=token if address else None, trust_remote_code=args.trust_remote_code
    )
    if address:
        return asyncio.run(serve_tcp(server, *address))
    status = asyncio.run(serve_stdio(server))
    # The editor has gone: leave now, without the seconds torch's teardown takes
    # and without waiting for a generation thread to notice its cancel flag.
    logging.shutdown()
    sys.stderr.flush()
    os._exit(status)


async def serve_stdio(server: CodetailorServer) -> int:
    server.loop = asyncio.get_running_loop()
    client_log.install(server, quiet_stderr=True)  # the editor shows stderr as errors
    out = transport.protocol_stdout()
    writer = transport.SafeWriter(lambda data: out.write(data), out.close)
    reader = transport.FrameReader(transport.stdin_chunks(server.loop, sys.stdin.fileno()))
    status = await transport.run_connection(server.protocol, reader, writer)
    server.cancel_all()
    if status is None:
        log.info("the client closed stdin; exiting")
    return status or 0


async def serve_tcp(server: CodetailorServer, host: str, port: int) -> int:
    """Serve one client at a time; the model stays loaded between clients."""
    server.loop = asyncio.get_running_loop()
    client_log.install(server, quiet_stderr=False)  # a TCP client does not see our stderr
    done: asyncio.Future[int] = server.loop.create_future()
    busy = asyncio.Lock()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:  # the previous client may be a moment away from noticing its own hang-up
            await asyncio.wait_for(busy.acquire(), CLIENT_WAIT_S)
        except TimeoutError:
            log.warning("refusing a second client while one is connected")
            writer.close()
            return
        try:
            safe = transport.SafeWriter(writer.write, writer.close)
            frames = transport.FrameReader(lambda: reader.read(65536))
            status = await transport.run_connection(server.protocol, frames, safe)
            safe.close()
            server.reset_connection()
            if status is not None and not done.done():
                done.set_result(status)
        finally:
            busy.release()

    listener = await asyncio.start_server(on_client, host, port)
    bound = listener.sockets[0].getsockname()
    print(f"codetailor: listening on {bound[0]}:{bound[1]}", file=sys.stderr, flush=True)
    async with listener:
        return await done
