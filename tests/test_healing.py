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


def test_token_texts_are_what_batch_decode_gives(tokenizer) -> None:
    """The fast tokenizer's own batch decode (the warm-up's cost) gives the same texts."""
    from lsp_server.completion.healing import token_texts

    assert tokenizer.clean_up_tokenization_spaces is False  # so the fast path is taken
    expected = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    assert token_texts(tokenizer) == expected


def test_token_texts_keep_batch_decode_where_it_cleans_up_spaces(tokenizer) -> None:
    from lsp_server.completion.healing import token_texts

    class CleaningUp:
        """A tokenizer whose decoding cleans up spaces: only `batch_decode` knows how."""

        clean_up_tokenization_spaces = True
        backend_tokenizer = tokenizer.backend_tokenizer

        def __len__(self) -> int:
            return 3

        def batch_decode(self, ids: list[list[int]]) -> list[str]:
            return [f"<{i[0]}>" for i in ids]

    assert token_texts(CleaningUp()) == ["<0>", "<1>", "<2>"]
