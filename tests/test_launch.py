"""`codetailor serve` addresses: loopback by default, and no open port without a token; the
startup quietness."""

from __future__ import annotations

import argparse
import logging
import subprocess
from pathlib import Path

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.lsp.serve import (
    QUIETNESS_ENV,
    is_loopback,
    parse_tcp,
    resolve_token,
    serve,
    startup_quietness,
)
from tests.e2e.rawclient import REPO, server_command


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


def token_args(**kwargs: object) -> argparse.Namespace:
    return argparse.Namespace(**({"auth_token": None, "auth_token_file": None} | kwargs))


def test_the_token_comes_from_the_environment_or_a_private_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("CODETAILOR_AUTH_TOKEN", "from-env")
    assert resolve_token(token_args()) == "from-env"
    secret = tmp_path / "token"
    secret.write_text("pässwört\n", encoding="utf-8")
    secret.chmod(0o600)
    assert resolve_token(token_args(auth_token_file=secret)) == "pässwört"
    for mode in (0o640, 0o604, 0o644):
        secret.chmod(mode)
        with pytest.raises(CodetailorError, match="chmod 600"):
            resolve_token(token_args(auth_token_file=secret))
    with pytest.raises(CodetailorError, match="cannot read"):
        resolve_token(token_args(auth_token_file=tmp_path / "missing"))


def test_a_token_on_the_command_line_works_with_a_warning(caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="codetailor.launch"):
        assert resolve_token(token_args(auth_token="t0ken")) == "t0ken"
    assert "process list" in caplog.text


def test_serve_refuses_a_readable_token_file_in_one_line(tmp_path: Path):
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    secret.chmod(0o644)
    command = server_command("--tcp", "127.0.0.1:0", "--auth-token-file", str(secret))
    done = subprocess.run(command, cwd=REPO, capture_output=True, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "readable by other users" in lines[0], lines


def test_the_startup_quietness_comes_from_the_flag_the_environment_or_the_default(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.delenv(QUIETNESS_ENV, raising=False)
    assert startup_quietness(None) == 25
    assert startup_quietness(0) == 0
    monkeypatch.setenv(QUIETNESS_ENV, "40")
    assert startup_quietness(None) == 40
    assert startup_quietness(10) == 10  # the flag wins
    for bad in ("loud", "96", "-1"):
        monkeypatch.setenv(QUIETNESS_ENV, bad)
        with pytest.raises(CodetailorError, match=f"^{QUIETNESS_ENV}: .*got '{bad}'$"):
            startup_quietness(None)
    with pytest.raises(CodetailorError, match="^--quietness: expected a whole number from 0 to 95"):
        startup_quietness(200)
