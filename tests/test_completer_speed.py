"""What the completer hands the engine for speed: drafting hints and the time budgets."""

from __future__ import annotations

import pytest

from lsp_server.completion.completer import Completer
from lsp_server.completion.prompt import PREFIX_ONLY
from lsp_server.model.engine import Engine
from tests.fixtures.fakes import CharTokenizer, FakeBackend


class RecordingEngine(Engine):
    """The real engine on the fake backend, keeping the arguments of every call."""

    def __init__(self) -> None:
        super().__init__(FakeBackend())
        self.calls: list[dict] = []

    def generate(self, prompt, **kwargs):  # type: ignore[override]
        self.calls.append(kwargs)
        return super().generate(prompt, **kwargs)


def test_the_hint_and_the_last_generation_are_drafting_sources() -> None:
    engine = RecordingEngine()
    completer = Completer(engine, CharTokenizer(), PREFIX_ONLY, token_healing=False)
    first = completer.complete("x = 1\ny = ", 10, max_tokens=5, mode="line")
    assert engine.calls[0]["hint"] == []
    completer.complete("x = 1\ny = 2", 11, max_tokens=5, mode="line", hint="abc")
    assert engine.calls[1]["hint"] == [ord("a"), ord("b"), ord("c"), *first.generation.tokens]


def test_budgets_become_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    from lsp_server.completion import completer as completer_module

    monkeypatch.setattr(completer_module.time, "monotonic", lambda: 100.0)
    engine = RecordingEngine()
    completer = Completer(engine, CharTokenizer(), PREFIX_ONLY, token_healing=False)
    completer.complete("x = ", 4, max_tokens=3, time_budget=2.0, prefill_budget=10.0)
    assert engine.calls[0]["deadline"] == 102.0
    assert engine.calls[0]["prefill_deadline"] == 110.0
    completer.complete("x = ", 4, max_tokens=3)
    assert engine.calls[1]["deadline"] is None and engine.calls[1]["prefill_deadline"] is None
