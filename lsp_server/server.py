"""The language server: a pygls server that loads the model in the background.

The LSP features (inline completion, document sync, settings) are built on this
in the server issue; for now it answers `initialize` and `shutdown`.
"""

from __future__ import annotations

import argparse
import logging

from pygls.lsp.server import LanguageServer

from lsp_server import __version__
from lsp_server.errors import CodetailorError

log = logging.getLogger("codetailor.server")


class CodetailorServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("codetailor", __version__)


def serve(args: argparse.Namespace) -> int:
    server = CodetailorServer()
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            raise CodetailorError(f"--tcp expects HOST:PORT, got '{args.tcp}'")
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.start_io()
    return 0
