"""The compiled backend: a static KV cache, padded steps, greedy-identical to the eager one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from lsp_server.errors import CodetailorError
from lsp_server.model.engine import Engine
from tests.fixtures.prompts import edited_prompts


@pytest.fixture(scope="module")
def tiny_double(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Llama in float64, so that greedy choices never hang on rounding."""
    from transformers import AutoModelForCausalLM

    from tests.tiny import build_model

    path = build_model(tmp_path_factory.mktemp("tiny64"), dtype="float64", seed=3)
    return AutoModelForCausalLM.from_pretrained(path, dtype="float64").eval()


def _prompts(vocab: int, count: int, seed: int):
    """Edited prompts (`edited_prompts`), each with a number of tokens to generate."""
    rng = random.Random(seed)
    for prompt in edited_prompts(rng, vocab, count):
        yield prompt, rng.randint(1, 14)


def _compare(model, compiled_backend, count: int, seed: int) -> tuple[int, int]:
    from lsp_server.model.backend import TransformersBackend

    eos = model.config.eos_token_id
    plain = Engine(TransformersBackend(model, [eos]), reuse=False, draft_tokens=0)
    fast = Engine(compiled_backend, prefill_chunk=16, draft_tokens=4)
    drafted = rejected = 0
    for step, (prompt, max_new) in enumerate(_prompts(model.config.vocab_size, count, seed)):
        expected = plain.generate(prompt, max_new_tokens=max_new)
        got = fast.generate(prompt, max_new_tokens=max_new, hint=expected.tokens[::2])
        assert got.tokens == expected.tokens, f"step {step}"
        assert got.stop_reason == expected.stop_reason, f"step {step}"
        assert got.logprobs == pytest.approx(expected.logprobs, abs=1e-6), f"step {step}"
        assert got.entropies == pytest.approx(expected.entropies, abs=1e-6), f"step {step}"
        drafted += got.drafted
        rejected += got.drafted - got.accepted
    return drafted, rejected


def test_static_cache_steps_equal_eager_and_the_cache_grows(tiny_double) -> None:
    """No widths: every step eager over the static cache, which must grow past 24 positions."""
    from lsp_server.model.compiled import CompiledBackend

    eos = tiny_double.config.eos_token_id
    backend = CompiledBackend(tiny_double, [eos], widths=(), capacity=24)
    drafted, rejected = _compare(tiny_double, backend, 30, seed=5)
    assert drafted and rejected  # drafts were verified and some rolled back
    assert backend.compile_seconds == {}


@pytest.mark.slow
def test_compiled_steps_equal_eager_greedy(tiny_double) -> None:
    """Decode (width 1) and verify (width 5) compiled; prompts, rollbacks and cache reuse."""
    from lsp_server.model.compiled import CompiledBackend

    eos = tiny_double.config.eos_token_id
    backend = CompiledBackend(tiny_double, [eos], widths=(1, 5), capacity=256)
    drafted, rejected = _compare(tiny_double, backend, 24, seed=7)
    assert drafted and rejected
    assert sorted(backend.compile_seconds) == [1, 5]  # both widths ran compiled


def test_choose_compile() -> None:
    from lsp_server.model.compiled import choose_compile

    assert choose_compile("auto", "cuda:0") and not choose_compile("auto", "cpu")
    assert choose_compile("on", "cpu") and not choose_compile("off", "cuda")
    with pytest.raises(CodetailorError, match="use auto, on or off"):
        choose_compile("yes", "cpu")


def test_the_compile_cache_lives_under_codetailor_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    from lsp_server.model.compiled import use_compile_cache

    monkeypatch.setenv("CODETAILOR_HOME", str(tmp_path))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert use_compile_cache() == str(tmp_path / "inductor")
    # Importing inductor sets its default: that is not the user's choice.
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())
    assert use_compile_cache() == str(tmp_path / "inductor")
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/elsewhere")  # the user's own choice wins
    assert use_compile_cache() == "/elsewhere"


def test_serve_compile_picks_the_backend(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--compile on` wires a CompiledBackend (its compilation is skipped here); auto on the
    CPU and int8 weights keep the eager one; the completions are the same."""
    from lsp_server.model.backend import TransformersBackend
    from lsp_server.model.compiled import CompiledBackend
    from lsp_server.model.factory import completer_over
    from lsp_server.model.loading import load_model

    monkeypatch.setattr(CompiledBackend, "warm", lambda self: {})
    loaded = load_model(str(tiny_model_dir), dtype="float32")
    on = completer_over(loaded, compile="on")
    backend = on.engine.backend
    assert isinstance(backend, CompiledBackend)
    backend.widths = []  # every step eager over the static cache: no compiling in this test
    assert type(completer_over(loaded, compile="auto").engine.backend) is TransformersBackend
    int8 = load_model(str(tiny_model_dir), dtype="int8")
    assert type(completer_over(int8, compile="on").engine.backend) is TransformersBackend
    text = "def add(a, b):\n    return"
    plain = completer_over(loaded).complete(text, len(text), max_tokens=6)
    assert on.complete(text, len(text), max_tokens=6).text == plain.text
