"""One-line errors checked before any work: an unwritable home, plotting without
matplotlib, a hub id that is neither cached nor reachable; no library warnings on
the terminal unless -v."""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path

import pytest

from lsp_server import cli
from lsp_server.errors import CodetailorError
from lsp_server.model import preflight


def test_an_unwritable_home_is_one_line_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("CODETAILOR_HOME", str(not_a_folder))
    repo = tmp_path / "repo"
    repo.mkdir()
    for argv in (["feedback", "stats", str(repo)], ["complete", f"{not_a_folder}:1:1"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "CODETAILOR_HOME" in err[0] and "Traceback" not in err[0]


def test_plot_without_matplotlib_is_one_line_before_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from lsp_server.measure import feedback_stats

    def never(*_: object, **__: object) -> None:
        raise AssertionError("the log was read before the plotting check")

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    monkeypatch.setattr(feedback_stats, "read_events", never)
    assert cli.main(["feedback", "stats", str(tmp_path), "--plot", str(tmp_path / "a.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--plot needs matplotlib" in err[0]


def test_an_unknown_hub_id_offline_fails_in_seconds_with_the_local_ways(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from lsp_server.model.loading import load_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    with pytest.raises(CodetailorError) as caught:
        load_model("Acme/no-such-model-1B")
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert "\n" not in message and "HF_HUB_OFFLINE" in message
    assert "local model folder" in message and ".gguf" in message


def test_no_network_is_found_without_waiting_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    started = time.monotonic()
    reason = preflight.hub_offline_reason(timeout=1.0)
    assert reason is not None and "127.0.0.1" in reason
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("verbosity", [0, 1])
def test_library_warnings_reach_the_terminal_only_with_v(verbosity: int) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        pygls_level = logging.getLogger("pygls").level
        try:
            cli.setup_logging(verbosity)
            warnings.warn("`old_name` is deprecated", FutureWarning, stacklevel=1)
            quiet = logging.getLogger("pygls").getEffectiveLevel() >= logging.ERROR
        finally:
            logging.getLogger("pygls").setLevel(pygls_level)
    assert (len(caught) == 0) == (verbosity == 0)
    assert quiet == (verbosity == 0)
