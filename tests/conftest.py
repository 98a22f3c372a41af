"""Shared fixtures: tiny models built once per session, an isolated cache home, and the
CPU's dtype choice pinned to fp32's (as on CPUs without bf16)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lsp_server.session.session import Session
from tests.fixtures.host import FakeHost
from tests.tiny import build_model

# The fixture repository and its fixtures (`fixture_repo`, `one_thread`).
pytest_plugins = ["tests.fixtures.repo"]


E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e starts real processes: mark it `e2e` by folder."""
    for item in items:
        if E2E in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama without FIM tokens (like the default model), in HF layout."""
    return build_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def tiny_fim_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer Llama whose tokenizer has StarCoder's FIM tokens."""
    return build_model(tmp_path_factory.mktemp("tiny-fim-model"), fim=True, seed=1)


@pytest.fixture(scope="session")
def session_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CODETAILOR_HOME shared by the slow tests, so the default model converts once."""
    return tmp_path_factory.mktemp("codetailor-home")


@pytest.fixture(autouse=True)
def _isolated_home(monkeypatch: pytest.MonkeyPatch, session_home: Path) -> None:
    """Never touch the user's ~/.cache/codetailor, and never reach a model hub."""
    monkeypatch.setenv("CODETAILOR_HOME", str(session_home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def _cpu_without_bf16() -> Iterator[None]:
    """`auto` means fp32 on the CPU in every test, as on CI runners without bf16 hardware;
    tests/test_cpu_dtype.py turns the capability on where it tests it. Session-wide, so
    that module- and session-scoped fixtures load their models in fp32 too."""
    from lsp_server.model import loading

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loading, "cpu_computes_bf16", lambda: False)
        yield


@pytest.fixture
def sessions() -> Iterator[list[tuple[Session, FakeHost]]]:
    """Sessions a test starts over a FakeHost (it appends them): disconnected and their
    worker pools shut down afterwards."""
    made: list[tuple[Session, FakeHost]] = []
    yield made
    for session, host in made:
        session.disconnect()
        host._pool.shutdown(wait=True, cancel_futures=True)
