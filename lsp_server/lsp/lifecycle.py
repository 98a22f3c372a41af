"""Where one connection stands in LSP's lifecycle, and what each message may do there.

A connection starts unauthenticated when the server has a token (TCP) and
authenticated otherwise. Before authentication only `initialize` with the
token gets through; anything else (a request, a notification, `exit`) ends the
connection. Once authenticated, requests before `initialize` are answered with
ServerNotInitialized (-32002) and notifications dropped; after `shutdown`,
requests get InvalidRequest (-32600). `exit` ends the connection with 0 after
`shutdown`, else 1. Messages are judged as parsed JSON, before pygls sees them.
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass
from typing import Any

from lsp_server.session.settings import settings_section

AUTH_FAILED = -32001
SERVER_NOT_INITIALIZED = -32002
INVALID_REQUEST = -32600
REQUESTS_ONLY = frozenset({"initialize", "shutdown"})
AUTH_MESSAGE = (
    "codetailor: authentication failed: this server requires the token it was started "
    "with (CODETAILOR_AUTH_TOKEN, --auth-token-file or --auth-token) in "
    "initializationOptions.authToken"
)


class Action(enum.Enum):
    PASS = "pass"  # hand the message to pygls
    DROP = "drop"  # ignore it (a notification out of turn)
    REFUSE = "refuse"  # answer the request with the verdict's error, keep the connection
    ADMIT = "admit"  # `initialize` with the right token: admit the client, then pass it on
    HANG_UP = "hang_up"  # answer with the error if it is a request, then close the connection
    EXIT = "exit"  # `exit`: close the connection with the verdict's status


@dataclass(frozen=True)
class Verdict:
    action: Action
    error: tuple[int, str] | None = None
    status: int = 0


def token_matches(sent: object, token: bytes) -> bool:
    """Constant-time comparison of UTF-8 bytes: any string (or non-string) is safe to pass."""
    if not isinstance(sent, str):
        return False
    return hmac.compare_digest(sent.encode("utf-8", "surrogatepass"), token)


def sent_token(params: Any) -> object:
    """`initializationOptions.authToken`, flat or under the `codetailor` section."""
    options = params.get("initializationOptions") if isinstance(params, dict) else None
    if not isinstance(options, dict):
        return None
    return settings_section(options).get("authToken") or options.get("authToken")


class Lifecycle:
    """One connection's state: authenticated, initialized, shut down."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token is not None else None
        self.authenticated = token is None
        self.initialized = False
        self.shut_down = False

    def judge(self, raw: dict[str, Any]) -> Verdict:
        """What to do with one message (a JSON object) in the connection's current state."""
        method = raw.get("method")
        is_request = "id" in raw and method is not None
        if not self.authenticated:
            return self._unauthenticated(raw, method, is_request)
        if method == "exit":
            return Verdict(Action.EXIT, status=0 if self.shut_down else 1)
        if method is None:  # a response to one of our requests
            return Verdict(Action.PASS if self.initialized else Action.DROP)
        if not is_request:  # `initialize` and `shutdown` count only as requests
            live = self.initialized and not self.shut_down
            return Verdict(Action.PASS if live and method not in REQUESTS_ONLY else Action.DROP)
        if self.shut_down:
            return Verdict(Action.REFUSE, (INVALID_REQUEST, "the server is shutting down"))
        if method == "initialize":
            if self.initialized:
                return Verdict(Action.REFUSE, (INVALID_REQUEST, "already initialized"))
            return Verdict(Action.ADMIT)
        if not self.initialized:
            return Verdict(Action.REFUSE, (SERVER_NOT_INITIALIZED, "send initialize first"))
        if method == "shutdown":
            self.shut_down = True
        return Verdict(Action.PASS)

    def _unauthenticated(self, raw: dict[str, Any], method: Any, is_request: bool) -> Verdict:
        assert self._token is not None
        params = raw.get("params")
        if method == "initialize" and is_request and token_matches(sent_token(params), self._token):
            return Verdict(Action.ADMIT)
        return Verdict(Action.HANG_UP, (AUTH_FAILED, AUTH_MESSAGE) if is_request else None)

    def admitted(self) -> None:
        """The client passed `initialize`'s checks (token, a free slot)."""
        self.authenticated = self.initialized = True
