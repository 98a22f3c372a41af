"""Token healing on a real (tiny) byte-level BPE tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from lsp_server.completion.healing import TokenHealer


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_extensions_all_start_with_the_text(tokenizer) -> None:
    healer = TokenHealer(tokenizer)
    found = healer.extensions(" r")
    assert found
    for token_id in found:
        assert tokenizer.decode([token_id]).startswith(" r")
    everything = [i for i in range(len(tokenizer)) if tokenizer.decode([i]).startswith(" r")]
    assert sorted(found) == sorted(everything)


def test_heal_drops_a_partial_last_token(tokenizer) -> None:
    healer = TokenHealer(tokenizer)
    ids = tokenizer.encode("def load(path):\n    ret", add_special_tokens=False)
    healed = healer.heal(ids)
    assert healed.ids == ids[:-1]
    assert healed.tail == tokenizer.decode(ids[-1:])
    assert ids[-1] in healed.allowed
    assert any(
        tokenizer.decode([t]) == healed.tail + "urn"
        or tokenizer.decode([t]).startswith(healed.tail + "u")
        for t in healed.allowed
    )
    # Prompt without the tail + the tail is the original text.
    assert tokenizer.decode(healed.ids) + healed.tail == tokenizer.decode(ids)


def test_heal_keeps_prompts_that_cannot_improve(tokenizer) -> None:
    healer = TokenHealer(tokenizer)
    assert healer.heal([5]).ids == [5]
    eos = tokenizer.eos_token_id
    assert healer.heal([5, eos]).tail == ""  # special tokens are never healed
