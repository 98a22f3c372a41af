"""`codetailor serve` addresses: loopback by default, and no open port without a token."""

from __future__ import annotations

import argparse

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.lsp.serve import is_loopback, parse_tcp, serve


def test_tcp_addresses_default_to_loopback():
    assert parse_tcp("7070") == ("127.0.0.1", 7070)
    assert parse_tcp(":7070") == ("127.0.0.1", 7070)
    assert parse_tcp("0.0.0.0:7070") == ("0.0.0.0", 7070)
    assert parse_tcp("[::1]:7070") == ("::1", 7070)
    for bad in ("localhost", "host:port", "1.2.3.4:99999"):
        with pytest.raises(CodetailorError):
            parse_tcp(bad)


def test_loopback_hosts():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1")
    assert is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("example.com")


def test_an_open_bind_without_a_token_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CODETAILOR_AUTH_TOKEN", raising=False)
    args = argparse.Namespace(tcp="0.0.0.0:7070", auth_token=None, verbose=0)
    with pytest.raises(CodetailorError, match="--auth-token"):
        serve(args)
