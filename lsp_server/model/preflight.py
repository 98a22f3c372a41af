"""Checks made before any work, each failing as one clear line (a CodetailorError).

They look at the machine (a folder, the network, installed extras), so they live
beside the model loading that most of them guard, not in a pure module.

- `check_home`: `$CODETAILOR_HOME` is a folder this user can write (converted
  models, adapters, feedback live there), before a 40 s conversion finds out;
- `check_plotting`: matplotlib is there before `--plot` reads a whole log;
- `check_hub_model`: a Hugging Face id that is not in the local cache fails in
  seconds when the hub cannot be reached (offline mode, no network), with how
  to pass a local folder or a GGUF file instead of a minute of retry warnings;
  a cached one then loads in offline mode, without those retries.
- `quiet_libraries`: library warnings (FutureWarning, DeprecationWarning,
  pygls' log) stay off a user's terminal unless `-v`.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import warnings
from pathlib import Path
from urllib.parse import urlparse

from lsp_server.errors import CodetailorError

HUB_TIMEOUT_S = 3.0
LOCAL_INSTEAD = (
    "pass a local model folder (--model /path/to/folder, with config.json) or a GGUF file "
    "(--model /path/to/model.gguf)"
)


def check_home(home: Path) -> None:
    """`home` (`$CODETAILOR_HOME`, default ~/.cache/codetailor) is a folder we can write in."""
    try:
        home.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=home):
            pass
    except OSError as exc:
        raise CodetailorError(
            f"CODETAILOR_HOME {home} is not a folder this user can write "
            f"({exc.strerror or exc}); point CODETAILOR_HOME at one, e.g. "
            "`export CODETAILOR_HOME=~/.cache/codetailor`"
        ) from None


def check_plotting(option: str = "--plot") -> None:
    """matplotlib is installed (a dev extra), or one line says how to get it."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise CodetailorError(
            f"{option} needs matplotlib, which is not installed: `pip install matplotlib` "
            f"(or drop {option})"
        ) from None


def hub_offline_reason(timeout: float = HUB_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached now (offline mode, no network), or None."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"offline mode is on ({name})"
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    outcome: list[str | None] = []

    def probe() -> None:  # getaddrinfo has no timeout of its own: a thread gives it one
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(f"{host} cannot be reached: {exc.strerror or exc}")

    thread = threading.Thread(target=probe, name="codetailor-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout * 2)
    return outcome[0] if outcome else f"{host} did not answer in {timeout * 2:.0f} s"


def check_hub_model(repo_id: str) -> None:
    """A hub model that is neither cached nor reachable fails now; a cached one with the
    hub unreachable loads in offline mode (no retries)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return
    try:
        cached = isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # noqa: BLE001 - an id the cache cannot even look up: let loading say
        return
    reason = hub_offline_reason()
    if reason is None:
        return
    if not cached:
        raise CodetailorError(
            f"model '{repo_id}' is not in the Hugging Face cache and the Hugging Face hub cannot "
            f"be used ({reason}); {LOCAL_INSTEAD}, or connect and try again"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"  # cached: load it without a minute of retries
    try:
        from huggingface_hub import constants

        constants.HF_HUB_OFFLINE = True
    except (ImportError, AttributeError):
        pass


def quiet_libraries(verbosity: int) -> None:
    """Without -v, no library warnings on the terminal: FutureWarning and
    DeprecationWarning are ignored and pygls logs errors only."""
    if verbosity > 0:
        logging.getLogger("pygls").setLevel(logging.NOTSET)  # as the root logger says
        return
    for category in (FutureWarning, DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    logging.getLogger("pygls").setLevel(logging.ERROR)
