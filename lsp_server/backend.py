"""The engine's `Backend` for a transformers causal LM, with a `DynamicCache` as KV cache."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from transformers import DynamicCache


class TransformersBackend:
    """Runs a `PreTrainedModel` chunk by chunk on its own device, greedy, without autograd."""

    def __init__(self, model: Any, eos_token_ids: Iterable[int]) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        # transformers 5.2x renamed `past_key_values` to `cache`; accept both.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def new_cache(self) -> DynamicCache:
        return DynamicCache(config=self.model.config)

    @torch.inference_mode()
    def forward(
        self, cache: DynamicCache, token_ids: Sequence[int], allowed: Sequence[int] | None = None
    ) -> int:
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.device)
        # Only the last position's logits are needed: skipping the vocabulary
        # projection for the others saves a fifth of prefill on small models.
        kwargs = {self._cache_kwarg: cache}
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **kwargs)
        logits = out.logits[0, -1]
        if allowed is not None:
            choices = torch.as_tensor(list(allowed), dtype=torch.long, device=logits.device)
            return int(choices[logits[choices].argmax()])
        return int(logits.argmax())

    def crop(self, cache: DynamicCache, length: int) -> None:
        # A negative argument removes that many positions, in every transformers 4.4x-5.x.
        surplus = cache.get_seq_length() - length
        if surplus > 0:
            cache.crop(-surplus)


def eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The tokens that end a document for this model: the tokenizer's and the config's EOS."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(t) for t in source)
    return ids
