"""The engine on a fake backend (milliseconds) and on a tiny transformers model."""

from __future__ import annotations

import hashlib
import math
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lsp_server.model import engine as engine_module
from lsp_server.model.engine import Engine, NgramDrafter, PrefixCache, common_prefix_length
from tests.fixtures.fakes import EOS, VOCAB, FakeBackend, TableBackend
from tests.fixtures.prompts import edited_prompts


def test_common_prefix_length() -> None:
    assert common_prefix_length([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix_length([], [1]) == 0
    assert common_prefix_length([1, 2], [1, 2, 3]) == 2


def test_second_identical_prompt_reuses_all_but_one_token() -> None:
    eng = Engine(FakeBackend())
    first = eng.generate([5, 6, 7, 8], max_new_tokens=3)
    second = eng.generate([5, 6, 7, 8], max_new_tokens=3)
    assert first.cached_tokens == 0
    assert second.cached_tokens == 3
    assert second.tokens == first.tokens
    assert first.prompt_tokens == second.prompt_tokens == 4
    assert second.generated_tokens == 3


def test_reuse_matches_fresh_generation_over_random_edits() -> None:
    rng = random.Random(7)
    reused, fresh = Engine(FakeBackend()), Engine(FakeBackend(), reuse=False)
    prompt = [rng.randrange(1, VOCAB) for _ in range(40)]
    hits = 0
    for _ in range(300):
        edit = rng.choice(["append", "delete", "middle", "append"])
        if edit == "append":
            prompt = prompt + [rng.randrange(1, VOCAB) for _ in range(rng.randint(1, 5))]
        elif edit == "delete" and len(prompt) > 5:
            prompt = prompt[: -rng.randint(1, 4)]
        elif edit == "middle":
            i = rng.randrange(len(prompt))
            prompt = prompt[:i] + [rng.randrange(1, VOCAB)] + prompt[i + 1 :]
        a = reused.generate(prompt, max_new_tokens=rng.randint(1, 6))
        b = fresh.generate(prompt, max_new_tokens=len(a.tokens) or 1)
        assert a.tokens == b.tokens[: len(a.tokens)]
        hits += a.cached_tokens > 0
    assert hits > 250  # reuse actually happened


def test_only_the_new_part_of_the_prompt_is_fed() -> None:
    backend = FakeBackend()
    eng = Engine(backend, prefill_chunk=1000)
    eng.generate(list(range(1, 21)), max_new_tokens=2)
    backend.calls.clear()
    result = eng.generate(list(range(1, 21)) + [30, 31, 32], max_new_tokens=1)
    assert result.cached_tokens == 20
    assert backend.calls == [3]


def test_generated_tokens_are_cached_for_the_next_prompt() -> None:
    eng = Engine(FakeBackend())
    prompt = [3, 4, 5]
    out = eng.generate(prompt, max_new_tokens=4).tokens
    # The user accepted the completion and kept typing: everything but the last
    # generated token (never fed to the model) is already in the cache.
    follow = eng.generate(prompt + out + [9], max_new_tokens=1)
    assert follow.cached_tokens == len(prompt) + len(out) - 1


def test_stop_predicate_includes_the_stopping_token() -> None:
    eng = Engine(FakeBackend())
    result = eng.generate([1, 2, 3], max_new_tokens=10, stop=lambda toks: len(toks) == 2)
    assert result.stop_reason == "stop"
    assert len(result.tokens) == 2


def test_eos_ends_generation_and_is_not_returned() -> None:
    backend = FakeBackend()
    backend.eos_token_ids = frozenset(range(VOCAB))  # whatever comes first is EOS
    result = Engine(backend).generate([1, 2], max_new_tokens=5)
    assert result.tokens == []
    assert result.stop_reason == "eos"


def test_max_tokens() -> None:
    result = Engine(FakeBackend()).generate([1, 2], max_new_tokens=4)
    assert result.stop_reason == "max_tokens"
    assert len(result.tokens) == 4


def test_cancel_stops_within_one_step() -> None:
    cancel = threading.Event()
    backend = FakeBackend(on_forward=lambda n: cancel.set() if n == 5 else None)
    result = Engine(backend, prefill_chunk=4).generate(
        list(range(1, 9)), max_new_tokens=50, cancel=cancel
    )
    # The cancel arrived during call 5; no further call was made.
    assert len(backend.calls) == 5
    assert result.stop_reason == "cancelled"


def test_cancel_during_prefill_keeps_the_prefilled_part_for_next_time() -> None:
    cancel = threading.Event()
    backend = FakeBackend(on_forward=lambda n: cancel.set() if n == 2 else None)
    eng = Engine(backend, prefill_chunk=10)
    prompt = list(range(1, 41))
    result = eng.generate(prompt, max_new_tokens=5, cancel=cancel)
    assert result.stop_reason == "cancelled" and result.tokens == []
    again = eng.generate(prompt, max_new_tokens=1)
    assert again.cached_tokens == 20


def _fake_clock(monkeypatch: pytest.MonkeyPatch, seconds_per_call: float = 0.1):
    """A clock that only moves when the model is called, `seconds_per_call` per call."""
    clock = [0.0]
    monkeypatch.setattr(engine_module.time, "monotonic", lambda: clock[0])

    def tick(_: int) -> None:
        clock[0] += seconds_per_call

    return clock, tick


def test_time_budget_bounds_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    _, tick = _fake_clock(monkeypatch)
    backend = FakeBackend(on_forward=tick)
    result = Engine(backend, draft_tokens=0).generate([1, 2, 3], max_new_tokens=100, deadline=0.45)
    assert result.stop_reason == "time"
    # One prefill call (0.0-0.1), then decode calls starting at 0.1 .. 0.5: the
    # budget of 0.45 s counts from the end of prefill; none starts after 0.55.
    assert backend.calls == [3, 1, 1, 1, 1, 1]
    assert result.generated_tokens == 6
    assert result.prefill_ms == pytest.approx(100)
    assert result.latency_ms == pytest.approx(600)


def test_a_prefill_longer_than_the_budget_is_finished_and_answered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, tick = _fake_clock(monkeypatch)
    backend = FakeBackend(on_forward=tick)
    eng = Engine(backend, prefill_chunk=4, draft_tokens=0)
    prompt = list(range(1, 41))  # 10 prefill calls: 1.0 s, twice the budget
    result = eng.generate(prompt, max_new_tokens=100, deadline=0.5)
    assert result.stop_reason == "time"
    assert result.prefill_ms == pytest.approx(1000)
    # Decoding got its whole budget after the prefill: calls at 1.0 .. 1.4.
    assert backend.calls == [4] * 10 + [1] * 5
    assert result.generated_tokens == 6
    assert result.tokens == Engine(FakeBackend()).generate(prompt, max_new_tokens=6).tokens
    # And the whole prompt is in the cache for the next request.
    assert eng.generate(prompt + [7], max_new_tokens=1).cached_tokens == 40


def test_a_hopeless_prefill_stops_at_the_prefill_deadline_and_is_continued(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, tick = _fake_clock(monkeypatch)
    backend = FakeBackend(on_forward=tick)
    eng = Engine(backend, prefill_chunk=4)
    prompt = list(range(1, 41))
    result = eng.generate(prompt, max_new_tokens=5, deadline=0.5, prefill_deadline=0.25)
    assert result.stop_reason == "first_token" and result.tokens == []
    assert backend.calls == [4, 4, 4]  # started at 0.0, 0.1, 0.2; none at 0.3
    again = eng.generate(prompt, max_new_tokens=5)
    assert again.cached_tokens == 12  # the next request continues where this one stopped
    assert again.tokens == Engine(FakeBackend()).generate(prompt, max_new_tokens=5).tokens


def test_prefill_is_chunked() -> None:
    backend = FakeBackend()
    Engine(backend, prefill_chunk=256).generate(list(range(1, 41)) * 25, max_new_tokens=1)
    assert backend.calls == [256, 256, 256, 232]


def test_a_failing_backend_does_not_poison_the_cache() -> None:
    class Boom(FakeBackend):
        fail = True

        def forward(self, cache, token_ids, allowed=None, **kw):  # type: ignore[override]
            if self.fail:
                cache.append(999)  # half-updated state
                raise RuntimeError("boom")
            return super().forward(cache, token_ids, allowed, **kw)

    backend = Boom()
    eng = Engine(backend)
    with pytest.raises(RuntimeError):
        eng.generate([1, 2, 3], max_new_tokens=2)
    backend.fail = False
    assert len(eng.cache) == 0
    good = eng.generate([1, 2, 3], max_new_tokens=2)
    assert good.tokens == Engine(FakeBackend()).generate([1, 2, 3], max_new_tokens=2).tokens


def test_prefix_cache_is_bounded() -> None:
    cache = PrefixCache(max_entries=3, max_tokens=100)
    for i in range(10):
        cache.put([i + 1] * 30, object())
    assert len(cache) == 3 and cache.total_tokens <= 100
    cache.put([99] * 90, object())
    assert cache.total_tokens <= 100
    assert len(cache) == 1


def test_a_prompt_sharing_only_its_first_tokens_leaves_the_entry_for_others() -> None:
    """A window whose start moved, or another file, shares only the prompt's header with a
    cached sequence: reusing it would crop hundreds of cached tokens to a handful, and
    the next request in the old window would prefill them all again."""
    eng = Engine(FakeBackend())
    header = [1, 2, 3]
    window = header + [10 + i % 50 for i in range(200)]
    moved = header + [70 + i % 40 for i in range(150)]
    eng.generate(window, max_new_tokens=2)
    assert eng.generate(moved, max_new_tokens=2).cached_tokens == 0
    assert eng.generate(window + [5], max_new_tokens=1).cached_tokens == len(window)
    assert eng.generate(moved + [5], max_new_tokens=1).cached_tokens == len(moved)
    # The context before the code is shared too: still the old window stays.
    context = [1, 2, 3] + [400 + i % 30 for i in range(80)]
    old, new = context + window[3:], context + moved[3:]
    eng.generate(old, max_new_tokens=2)
    assert eng.generate(new, max_new_tokens=2).cached_tokens == 0
    assert eng.generate(old + [5], max_new_tokens=1).cached_tokens == len(old)
    # Cropping that keeps more than it throws away, or throws away little, still happens.
    assert eng.generate(old[:150] + [6], max_new_tokens=1).cached_tokens == 150
    short = Engine(FakeBackend())
    short.generate([1, 2, 3, 4, 5, 6], max_new_tokens=1)
    assert short.generate([1, 2, 9, 9], max_new_tokens=1).cached_tokens == 2


def test_separate_documents_keep_separate_entries() -> None:
    eng = Engine(FakeBackend())
    doc_a, doc_b = [1, 2, 3, 4, 5], [7, 8, 9, 10]
    eng.generate(doc_a, max_new_tokens=2)
    eng.generate(doc_b, max_new_tokens=2)
    assert eng.generate(doc_a + [6], max_new_tokens=1).cached_tokens == 5
    assert eng.generate(doc_b + [6], max_new_tokens=1).cached_tokens == 4


def test_first_allowed_restricts_only_the_first_token() -> None:
    backend = FakeBackend()
    result = Engine(backend, prefill_chunk=2).generate(
        [1, 2, 3, 4, 5], max_new_tokens=4, first_allowed=[7, 8]
    )
    assert result.tokens[0] in (7, 8)
    # After the first token, decoding is free again: the same as continuing by hand.
    rest = Engine(FakeBackend()).generate([1, 2, 3, 4, 5, result.tokens[0]], max_new_tokens=3)
    assert result.tokens[1:] == rest.tokens


def test_empty_prompt_is_rejected() -> None:
    with pytest.raises(ValueError):
        Engine(FakeBackend()).generate([], max_new_tokens=1)


# --- the same guarantees on a real (tiny) transformers model -----------------


@pytest.fixture(scope="module")
def tiny_double(tmp_path_factory: pytest.TempPathFactory):
    """A tiny Llama in float64, so that chunked and whole prefill never differ in argmax."""
    from transformers import AutoModelForCausalLM

    from tests.tiny import build_model

    path = build_model(tmp_path_factory.mktemp("tiny64"), dtype="float64", seed=3)
    model = AutoModelForCausalLM.from_pretrained(path, dtype="float64").eval()
    return model


def test_tiny_model_reuse_is_identical_to_scratch_and_to_hf_generate(tiny_double) -> None:
    import torch

    from lsp_server.model.backend import TransformersBackend

    model = tiny_double
    vocab = model.config.vocab_size
    eos = model.config.eos_token_id
    reused = Engine(TransformersBackend(model, [eos]), prefill_chunk=16)
    fresh = Engine(TransformersBackend(model, [eos]), reuse=False)
    rng = random.Random(11)
    prompt = [rng.randrange(1, vocab) for _ in range(30)]
    hits = 0
    for step in range(40):
        edit = step % 4
        if edit in (0, 1):
            prompt = prompt + [rng.randrange(1, vocab) for _ in range(rng.randint(1, 6))]
        elif edit == 2:
            prompt = prompt[: -rng.randint(1, 3)]
        else:
            i = rng.randrange(len(prompt))
            prompt = prompt[:i] + [rng.randrange(1, vocab)] + prompt[i + 1 :]
        a = reused.generate(prompt, max_new_tokens=6)
        b = fresh.generate(prompt, max_new_tokens=6)
        assert a.tokens == b.tokens, f"step {step}"
        hits += a.cached_tokens > 0
    assert hits >= 35
    # And the engine's greedy decoding is transformers' own greedy decoding.
    ids = torch.tensor([prompt])
    with torch.no_grad():
        hf = model.generate(
            ids, max_new_tokens=6, do_sample=False, eos_token_id=eos, pad_token_id=eos
        )
    expected = hf[0, len(prompt) :].tolist()
    if eos in expected:
        expected = expected[: expected.index(eos)]
    assert reused.generate(prompt, max_new_tokens=6).tokens == expected


def test_tiny_model_first_allowed_picks_the_best_allowed_token(tiny_double) -> None:
    import torch

    from lsp_server.model.backend import TransformersBackend

    model = tiny_double
    prompt = [5, 9, 14, 3]
    with torch.no_grad():
        logits = model(torch.tensor([prompt])).logits[0, -1]
    ranked = logits.argsort(descending=True).tolist()
    allowed = ranked[3:7]  # the best token is not among them
    engine = Engine(TransformersBackend(model, []))
    first = engine.generate(prompt, max_new_tokens=1, first_allowed=allowed).tokens[0]
    assert first == ranked[3]


def test_prefill_warms_the_cache_for_the_next_generation() -> None:
    backend = FakeBackend()
    eng = Engine(backend, prefill_chunk=8)
    prompt = list(range(1, 31))
    assert eng.prefill(prompt[:20]) == 20
    assert backend.calls == [8, 8, 4]
    warmed = eng.generate(prompt, max_new_tokens=4)
    assert warmed.cached_tokens == 20
    cold = Engine(FakeBackend(), prefill_chunk=8).generate(prompt, max_new_tokens=4)
    assert warmed.tokens == cold.tokens  # warming never changes the output


def test_prefill_yields_between_chunks_and_keeps_its_work() -> None:
    cancel = threading.Event()
    backend = FakeBackend(on_forward=lambda n: cancel.set() if n == 2 else None)
    eng = Engine(backend, prefill_chunk=4)
    prompt = list(range(1, 41))
    assert eng.prefill(prompt, cancel) == 8  # stopped after the chunk during which it was asked
    assert len(backend.calls) == 2
    assert eng.generate(prompt, max_new_tokens=1).cached_tokens == 8
    assert eng.prefill(prompt, chunk=16) >= 1  # the rest, in larger chunks


# --- drafted tokens, verified in one forward ----------------------------------


class PatternBackend(FakeBackend):
    """A small-vocabulary model that mostly continues the last two tokens' pattern.

    Text repeats, so n-gram drafts are often right and sometimes wrong (where
    the whole context's hash overrides the pattern), and EOS can come up.
    """

    def __init__(self, vocab: int = 8, eos: bool = True, on_forward=None) -> None:
        super().__init__(on_forward)
        self.vocab = vocab
        self.eos_token_ids = frozenset({EOS}) if eos else frozenset()

    def _next(self, context: list[int]) -> int:
        local = hashlib.sha256(repr(context[-2:]).encode()).digest()
        whole = hashlib.sha256(repr(context).encode()).digest()
        if whole[0] % 5 == 0:  # a surprise: the pattern does not hold here
            return whole[1] % self.vocab
        return local[0] % self.vocab


def _stop_rule(kind: int, value: int):
    if kind == 0:
        return None
    if kind == 1:
        return lambda toks: toks[-1] == value
    return lambda toks: len(toks) >= value


@settings(max_examples=300, deadline=None)
@given(
    prompt=st.lists(st.integers(1, 7), min_size=1, max_size=60),
    max_new_tokens=st.integers(0, 40),
    stop_kind=st.integers(0, 2),
    stop_value=st.integers(1, 12),
    draft_tokens=st.integers(1, 8),
    chunk=st.integers(1, 64),
    hint=st.lists(st.integers(0, 7), max_size=20),
    eos=st.booleans(),
    first_allowed=st.none() | st.lists(st.integers(0, 7), min_size=1, max_size=4),
)
def test_drafted_decoding_equals_plain_greedy(
    prompt: list[int],
    max_new_tokens: int,
    stop_kind: int,
    stop_value: int,
    draft_tokens: int,
    chunk: int,
    hint: list[int],
    eos: bool,
    first_allowed: list[int] | None,
) -> None:
    stop = _stop_rule(stop_kind, stop_value)
    plain = Engine(PatternBackend(eos=eos), draft_tokens=0)
    backend = PatternBackend(eos=eos)
    drafted = Engine(backend, draft_tokens=draft_tokens, prefill_chunk=chunk)
    limits = {"max_new_tokens": max_new_tokens, "stop": stop, "first_allowed": first_allowed}
    expected = plain.generate(prompt, **limits)
    # Drafts come in with the prompt's last chunk too, the first token healed among
    # `first_allowed`; the hint may also repeat the prompt's end.
    got = drafted.generate(prompt, hint=hint + prompt[-3:] + expected.tokens[:3], **limits)
    assert got.tokens == expected.tokens
    assert got.stop_reason == expected.stop_reason
    assert got.forwards <= max(expected.forwards, 1)
    # A kept draft carries the score plain decoding computed at its position.
    assert len(got.logprobs) == len(got.entropies) == len(got.tokens)
    assert (got.logprobs, got.entropies) == (expected.logprobs, expected.entropies)
    # What the cache holds is exactly what the engine says it fed.
    for entry in drafted.cache._entries:
        assert entry.cache == entry.tokens
    # A follow-up request (the user accepted part and typed on) reuses the
    # cache left after rollbacks and still decodes exactly like plain greedy.
    follow = prompt + got.tokens[: len(got.tokens) // 2] + [3]
    again = drafted.generate(follow, max_new_tokens=max_new_tokens, stop=stop, hint=got.tokens)
    assert again.tokens == plain.generate(follow, max_new_tokens=max_new_tokens, stop=stop).tokens
    assert again.cached_tokens >= min(len(prompt), len(follow) - 1) - 1 or not got.tokens


def test_drafting_takes_fewer_forwards_on_repetitive_text() -> None:
    rng = random.Random(3)
    plain_forwards = drafted_forwards = tokens = 0
    for _ in range(30):
        prompt = [rng.randrange(1, 8) for _ in range(rng.randint(10, 60))]
        plain = Engine(PatternBackend(eos=False), draft_tokens=0).generate(
            prompt, max_new_tokens=32
        )
        fast = Engine(PatternBackend(eos=False)).generate(prompt, max_new_tokens=32)
        assert fast.tokens == plain.tokens
        plain_forwards += plain.forwards
        drafted_forwards += fast.forwards
        tokens += fast.generated_tokens
        assert fast.accepted <= fast.drafted
    assert plain_forwards == tokens  # one token per forward, plain
    assert tokens / drafted_forwards > 1.2


def test_a_hint_that_is_right_is_verified_in_one_forward() -> None:
    prompt = [5, 9, 14, 3, 22]
    plain = Engine(FakeBackend(), draft_tokens=0).generate(prompt, max_new_tokens=9)
    fast = Engine(FakeBackend()).generate(prompt, max_new_tokens=9, hint=plain.tokens)
    assert fast.tokens == plain.tokens
    # The prefill yields the first token; one forward verifies seven drafts and adds the ninth.
    assert fast.forwards == 2 and fast.accepted == 7
    assert fast.tokens_per_forward == 4.5


def test_a_call_may_draft_more_than_the_engine_and_an_engine_without_drafts_never_does() -> None:
    prompt = [5, 9, 14, 3, 22]
    plain = Engine(FakeBackend(), draft_tokens=0).generate(prompt, max_new_tokens=17)
    hint = plain.tokens
    # Each call after the prefill's: the last token and the drafts verified with it.
    for per_call, widths in ((None, [4, 4, 4, 4]), (8, [9, 7])):
        backend = FakeBackend()
        got = Engine(backend, draft_tokens=3).generate(
            prompt, max_new_tokens=17, hint=hint, draft_tokens=per_call
        )
        assert got.tokens == plain.tokens and backend.calls[1:] == widths
    off = FakeBackend()
    Engine(off, draft_tokens=0).generate(prompt, max_new_tokens=4, hint=hint, draft_tokens=8)
    assert off.calls == [5, 1, 1, 1]


def test_drafts_are_verified_with_the_prompts_last_chunk() -> None:
    """A hint that continues the prompt's last tokens: the prefill's forward verifies it."""
    prompt = [5, 9, 14, 3, 22]
    plain = Engine(FakeBackend(), draft_tokens=0).generate(prompt, max_new_tokens=9)
    backend = FakeBackend()
    hint = [14, 3, 22, *plain.tokens]  # the suggestion shown before the user typed "3 22"
    fast = Engine(backend).generate(prompt, max_new_tokens=9, hint=hint)
    assert fast.tokens == plain.tokens
    # One forward: the five prompt tokens and eight drafts; the ninth token is the model's.
    assert backend.calls == [13] and fast.forwards == 1 and fast.accepted == 8


def test_a_recent_generation_is_drafted_when_its_place_comes_back() -> None:
    """No hint: the engine drafts from its own recent generations, found by their prompt tail."""
    prompt = [5, 9, 14, 3, 22]
    plain = Engine(FakeBackend(), draft_tokens=0).generate(prompt, max_new_tokens=9)
    backend = FakeBackend()
    engine = Engine(backend, reuse=False)
    engine.generate(prompt, max_new_tokens=9)
    engine.generate([7, 7, 7], max_new_tokens=4)  # elsewhere in between
    backend.calls.clear()
    # The user typed the first two suggested tokens: the rest comes in one forward.
    again = engine.generate(prompt + plain.tokens[:2], max_new_tokens=7)
    assert again.tokens == plain.tokens[2:]
    assert again.forwards == 1 and again.accepted == 6
    forgetful = Engine(FakeBackend(), reuse=False, draft_history=0)
    forgetful.generate(prompt, max_new_tokens=9)
    assert forgetful.generate(prompt + plain.tokens[:2], max_new_tokens=7).accepted == 0


def test_cancel_mid_decoding_gives_a_prefix_of_plain_greedy() -> None:
    for after in range(2, 8):
        cancel = threading.Event()
        backend = PatternBackend(
            eos=False, on_forward=lambda n, a=after, c=cancel: n == a and c.set()
        )
        got = Engine(backend).generate(list(range(1, 8)) * 3, max_new_tokens=40, cancel=cancel)
        plain = Engine(PatternBackend(eos=False), draft_tokens=0).generate(
            list(range(1, 8)) * 3, max_new_tokens=40
        )
        assert got.stop_reason == "cancelled"
        assert len(backend.calls) == after
        assert got.tokens == plain.tokens[: len(got.tokens)]


def test_ngram_drafter_prefers_the_longest_match_and_the_hint() -> None:
    drafter = NgramDrafter([1, 2, 3, 4, 9, 3, 4, 5, 6, 2, 3, 4])
    assert drafter.draft(3) == [9, 3, 4]  # "2 3 4" beats the later, shorter "3 4"
    drafter = NgramDrafter([7, 1, 2, 8, 8, 1, 2], hint=[1, 2, 6, 6])
    assert drafter.draft(4) == [6, 6]
    drafter.extend([6])
    assert drafter.draft(2) == [6]
    assert NgramDrafter([1, 2, 3]).draft(4) == []
    assert NgramDrafter([1, 2, 1]).draft(0) == []


def test_tiny_model_drafted_decoding_equals_plain_greedy(tiny_double) -> None:
    from lsp_server.model.backend import TransformersBackend

    model = tiny_double
    vocab, eos = model.config.vocab_size, model.config.eos_token_id
    plain = Engine(TransformersBackend(model, [eos]), reuse=False, draft_tokens=0)
    drafted = Engine(TransformersBackend(model, [eos]), prefill_chunk=16)
    rng = random.Random(5)
    accepted = rejected = 0
    for step, prompt in enumerate(edited_prompts(rng, vocab, 36)):
        max_new = rng.randint(1, 12)
        stop_at = rng.randrange(1, vocab)
        stop = (lambda toks, s=stop_at: toks[-1] == s) if step % 2 else None
        # Token healing on some steps: the first token among a few, drafts after it.
        allowed = rng.sample(range(1, vocab), 5) if step % 5 == 0 else None
        limits = {"max_new_tokens": max_new, "stop": stop, "first_allowed": allowed}
        expected = plain.generate(prompt, **limits)
        hint = prompt[-3:] + list(expected.tokens)  # drafts from the prompt's end on
        if step % 3 == 1 and len(hint) > 5:
            hint[len(hint) // 2] = (hint[len(hint) // 2] + 1) % vocab  # right, then wrong
        elif step % 3 == 2:
            hint = [rng.randrange(1, vocab) for _ in range(8)]
        got = drafted.generate(prompt, hint=hint, **limits)
        assert got.tokens == expected.tokens, f"step {step}"
        assert got.stop_reason == expected.stop_reason, f"step {step}"
        # One forward over drafts and one step compute the same scores (float rounding aside).
        assert len(got.logprobs) == len(got.entropies) == len(got.tokens), f"step {step}"
        assert got.logprobs == pytest.approx(expected.logprobs, abs=1e-4), f"step {step}"
        assert got.entropies == pytest.approx(expected.entropies, abs=1e-4), f"step {step}"
        accepted += got.accepted
        rejected += got.drafted - got.accepted
    assert accepted > 20 and rejected > 5  # both paths (keep, roll back) were taken


# --- the model's confidence in each generated token ---------------------------

# Vocabulary 0..3 (0 is EOS). After 1 the model favours 2 (p = 2/5), after 2 it favours
# 3 (p = 9/12), after 3 it ends (p(EOS) = 3/6).
KNOWN = {
    1: [0.0, 0.0, math.log(2), 0.0],
    2: [0.0, 0.0, 0.0, math.log(9)],
    3: [math.log(3), 0.0, 0.0, 0.0],
}


def _entropy(*p: float) -> float:
    return -sum(x * math.log(x) for x in p)


@pytest.mark.parametrize("hint", [[], [1, 2, 3, 0]], ids=["plain", "drafted"])
def test_known_logits_give_known_logprobs_and_entropies(hint: list[int]) -> None:
    engine = Engine(TableBackend(KNOWN), draft_tokens=0 if not hint else 8)
    got = engine.generate([1], max_new_tokens=8, hint=hint)
    assert got.tokens == [2, 3]
    assert got.stop_reason == "eos"
    assert got.logprobs == pytest.approx((math.log(2 / 5), math.log(9 / 12)))
    assert got.entropies == pytest.approx(
        (_entropy(0.2, 0.2, 0.4, 0.2), _entropy(1 / 12, 1 / 12, 1 / 12, 9 / 12))
    )
    assert got.forwards == (1 if hint else 3)


def test_a_healed_first_token_is_scored_against_the_whole_distribution() -> None:
    got = Engine(TableBackend(KNOWN)).generate([1], max_new_tokens=1, first_allowed=[1, 3])
    assert got.tokens == [1]  # 1 and 3 tie (p = 1/5); the first wins
    assert got.logprobs == pytest.approx((math.log(1 / 5),))
    assert got.entropies == pytest.approx((_entropy(0.2, 0.2, 0.4, 0.2),))


def test_a_backend_that_cannot_score_gives_no_scores() -> None:
    class Unscored(FakeBackend):
        def forward(self, cache, token_ids, allowed=None, **_):  # type: ignore[override]
            return super().forward(cache, token_ids, allowed)

        def verify(self, cache, token_ids, *, keep=None, allowed=None, **_):  # type: ignore[override]
            return super().verify(cache, token_ids, keep=keep, allowed=allowed)

    got = Engine(Unscored()).generate([1, 2, 3], max_new_tokens=5)
    assert len(got.tokens) == 5
    assert got.logprobs == () and got.entropies == ()


@pytest.mark.parametrize("drafts", [0, 8])
def test_tiny_model_scores_are_the_log_softmax_of_its_logits(tiny_double, drafts: int) -> None:
    """With drafts too: a verification scores its rows up to the first rejected draft,
    and those are the scores plain decoding computes."""
    import torch

    from lsp_server.model.backend import TransformersBackend

    model = tiny_double
    prompt = [5, 9, 14, 3] * 3  # repeated, so that the prompt drafts its own continuation
    engine = Engine(TransformersBackend(model, []), draft_tokens=drafts)
    got = engine.generate(prompt, max_new_tokens=6)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + got.tokens])).logits[0].float()
    logp = torch.log_softmax(logits, dim=-1)[len(prompt) - 1 : -1]
    expected = logp.gather(-1, torch.tensor(got.tokens)[:, None])[:, 0].tolist()
    entropy = (-(logp.exp() * logp).sum(-1)).tolist()
    assert got.logprobs == pytest.approx(expected, abs=1e-4)
    assert got.entropies == pytest.approx(entropy, abs=1e-4)
    assert all(lp <= 0 for lp in got.logprobs) and all(e >= 0 for e in got.entropies)


def test_a_verification_scores_rows_up_to_the_first_rejected_draft() -> None:
    import torch

    from lsp_server.model.backend import greedy, token_scores

    logits = torch.log_softmax(torch.randn(4, 50, generator=torch.Generator().manual_seed(0)), -1)
    chosen = logits.argmax(-1).tolist()
    drafts = [chosen[0], (chosen[1] + 1) % 50, chosen[2]]  # the second draft is rejected
    scores: list[tuple[float, float]] = []
    assert greedy(logits, scores=scores, fed_after=drafts) == chosen
    expected = token_scores(logits[:2], chosen[:2])
    assert len(scores) == 2
    assert [v for score in scores for v in score] == pytest.approx(
        [v for score in expected for v in score], abs=1e-5
    )
    everything: list[tuple[float, float]] = []
    greedy(logits, scores=everything, fed_after=chosen[:3])  # every draft agreed
    assert len(everything) == 4


def test_token_scores_of_a_masked_row_are_finite() -> None:
    import torch

    from lsp_server.model.backend import token_scores

    logits = torch.tensor([[0.0, -math.inf, math.log(3)], [1.0, 1.0, 1.0]])
    (lp0, h0), (lp1, h1) = token_scores(logits, [2, 0])
    assert (lp0, h0) == pytest.approx((math.log(0.75), _entropy(0.25, 0.75)))
    assert (lp1, h1) == pytest.approx((math.log(1 / 3), math.log(3)))


def test_scoring_cost_times_steps_and_verifies_with_and_without_scores() -> None:
    from lsp_server.measure.engine_speed import scoring_cost

    backend = FakeBackend()
    result = scoring_cost(backend, list(range(1, 21)), repeats=3)
    assert set(result) == {
        "step_ms_unscored",
        "step_ms_scored",
        "scored_over_unscored_step",
        "scored_over_unscored_verify_9",
    }
    assert result["scored_over_unscored_step"] > 0 < result["scored_over_unscored_verify_9"]
    # 1 prefill, then per repeat a 1-token and a 9-token forward, each unscored and scored
    assert backend.calls == [20] + [1, 1, 9, 9] * 3


def test_after_drafts_rejected_at_their_first_token_the_next_forward_drafts_one() -> None:
    """A rejected draft predicts another: the forward after one drafts at most
    SMALL_DRAFT_AFTER_MISS tokens, until a draft's first token is taken again; the
    output stays plain greedy decoding's."""
    forwards: list[tuple[list[int], list[int]]] = []

    class Recording(FakeBackend):
        def verify(self, cache, token_ids, *, keep=None, allowed=None, scores=None):  # type: ignore[override]
            chosen = super().verify(cache, token_ids, keep=keep, allowed=allowed, scores=scores)
            forwards.append((list(token_ids[len(token_ids) - (keep or len(token_ids)) :]), chosen))
            return chosen

    prompt = [7, 3, 9, 4, 11, 5] * 6  # the prompt drafts its own continuation
    got = Engine(Recording(), draft_tokens=3).generate(prompt, max_new_tokens=40)
    plain = Engine(FakeBackend(), draft_tokens=0).generate(prompt, max_new_tokens=40)
    assert got.tokens == plain.tokens
    missed, checked = False, 0
    for fed, chosen in forwards[1:]:  # the first carries the prompt's last chunk
        drafts = fed[1:]
        if missed:
            assert len(drafts) <= engine_module.SMALL_DRAFT_AFTER_MISS
            checked += 1
        if drafts:
            missed = chosen[0] != drafts[0]
    assert checked > 0  # the rule was exercised
