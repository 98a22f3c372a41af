"""The engine's `Backend` for a transformers causal LM, with a `DynamicCache` as KV cache.

Besides the greedy token, each chosen position is scored when the engine asks
(`greedy`'s `scores`): the log-softmax of the row, in float32, gives the
token's log-probability and the distribution's entropy. The row's logits are
already computed; the extra work is a pass over the vocabulary per kept row.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Cache, DynamicCache
from transformers.cache_utils import DynamicLayer

from lsp_server.model.engine import Score


class GrowingLayer(DynamicLayer):
    """A KV cache layer that writes new positions into spare capacity instead of re-copying.

    transformers' DynamicLayer appends with `torch.cat`, copying the whole
    cache of every layer at every decoded token: with an 850-token prompt that
    was a third to a half of SmolLM2's decode time on this CPU (profiled; decode
    ran ~25% faster without it). This layer keeps buffers with room to spare
    (half again when full) and exposes the filled part as a view, so a decode
    step writes one position per layer.
    """

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._length = 0

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = key_states.shape[-2]
        end = self._length + new
        if self._k is None or end > self._k.shape[-2]:
            self._grow(key_states, value_states, end)
        assert self._k is not None and self._v is not None
        self._k[..., self._length : end, :] = key_states
        self._v[..., self._length : end, :] = value_states
        self._length = end
        self.keys = self._k[..., :end, :]
        self.values = self._v[..., :end, :]
        return self.keys, self.values

    def _grow(self, keys: torch.Tensor, values: torch.Tensor, needed: int) -> None:
        capacity = needed + max(needed // 2, 256)  # room for a completion and some typing
        k_shape = (*keys.shape[:-2], capacity, keys.shape[-1])
        v_shape = (*values.shape[:-2], capacity, values.shape[-1])
        k = torch.empty(k_shape, dtype=keys.dtype, device=keys.device)
        v = torch.empty(v_shape, dtype=values.dtype, device=values.device)
        if self._k is not None and self._v is not None and self._length:
            k[..., : self._length, :] = self._k[..., : self._length, :]
            v[..., : self._length, :] = self._v[..., : self._length, :]
        self._k, self._v = k, v

    def get_seq_length(self) -> int:
        return self._length if self.is_initialized else 0

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError("crop takes the negative number of positions to remove")
        if tokens_to_remove == 0 or not self.is_initialized:
            return
        self._length = max(self._length + tokens_to_remove, 0)
        assert self._k is not None and self._v is not None
        self.keys = self._k[..., : self._length, :]
        self.values = self._v[..., : self._length, :]

    def reset(self) -> None:
        self._k = self._v = None
        self._length = 0
        super().reset()


class TransformersBackend:
    """Runs a `PreTrainedModel` chunk by chunk on its own device, greedy, without autograd."""

    def __init__(self, model: Any, eos_token_ids: Iterable[int]) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        # transformers 5.2x renamed `past_key_values` to `cache`; accept both.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"

    def new_cache(self) -> Cache:
        cache = DynamicCache(config=self.model.config)
        # Plain full-attention layers grow in place; sliding-window and other
        # special layers keep transformers' own behaviour.
        cache.layers = [
            GrowingLayer() if type(layer) is DynamicLayer else layer for layer in cache.layers
        ]
        return cache

    def _run(self, cache: Cache, token_ids: Sequence[int], keep: int) -> torch.Tensor:
        """Append `token_ids` in one forward; the logits of the last `keep` of them, one
        row each. Skipping the vocabulary projection for the other positions saves a
        fifth of prefill on small models."""
        ids = torch.tensor([list(token_ids)], dtype=torch.long, device=self.device)
        kwargs = {self._cache_kwarg: cache}
        out = self.model(input_ids=ids, use_cache=True, logits_to_keep=keep, **kwargs)
        logits: torch.Tensor = out.logits[0]
        return logits

    @torch.inference_mode()
    def forward(
        self,
        cache: Cache,
        token_ids: Sequence[int],
        allowed: Sequence[int] | None = None,
        *,
        scores: list[Score] | None = None,
    ) -> int:
        return greedy(self._run(cache, token_ids, keep=1), allowed, scores=scores)[-1]

    @torch.inference_mode()
    def verify(
        self,
        cache: Cache,
        token_ids: Sequence[int],
        *,
        keep: int | None = None,
        allowed: Sequence[int] | None = None,
        scores: list[Score] | None = None,
    ) -> list[int]:
        """Append `token_ids` in one forward; the greedy next token after each of the
        last `keep` (default all), the first among `allowed` when given (with `scores`,
        each one's `Score` appended there).

        The engine feeds the last emitted token (or the prompt's last chunk) and
        the drafted ones: only the positions it compares need logits.
        """
        logits = self._run(cache, token_ids, keep=keep or len(token_ids))
        return greedy(logits, allowed, scores=scores)

    def crop(self, cache: Cache, length: int) -> None:
        # A negative argument removes that many positions, in every transformers 4.4x-5.x.
        surplus = int(cache.get_seq_length()) - length
        if surplus > 0:
            cache.crop(-surplus)


def greedy(
    logits: torch.Tensor,
    allowed: Sequence[int] | None = None,
    *,
    scores: list[Score] | None = None,
) -> list[int]:
    """The argmax of each row of `logits`; the first row's among `allowed` when given.
    With `scores`, each chosen token's `Score` is appended there (see `token_scores`)."""
    tokens = [int(t) for t in logits.argmax(dim=-1).tolist()]
    if allowed is not None:
        choices = torch.as_tensor(list(allowed), dtype=torch.long, device=logits.device)
        tokens[0] = int(choices[logits[0, choices].argmax()])
    if scores is not None:
        scores.extend(token_scores(logits, tokens))
    return tokens


def token_scores(logits: torch.Tensor, tokens: Sequence[int]) -> list[Score]:
    """(log-probability of `tokens[i]`, entropy in nats) of each row of `logits`, computed
    in float32 over the whole vocabulary.

    On the CPU in numpy, on one thread: torch's intra-op threads cost a few elementwise
    passes over the vocabulary more in synchronisation than in work, and on a busy
    machine a parallel op waits for a descheduled thread (measured under load 9: tens
    of ms per step with torch, 0.1-2 ms with numpy)."""
    if logits.device.type == "cpu":
        return _numpy_scores(logits.float().numpy(), tokens)
    logp = torch.log_softmax(logits.float(), dim=-1)
    index = torch.as_tensor(list(tokens), dtype=torch.long, device=logits.device)
    picked = logp.gather(-1, index[:, None])[:, 0]
    # entr(p) = -p log p, and 0 where p underflowed to 0 (no 0 * -inf).
    entropy = torch.special.entr(logp.exp()).sum(dim=-1)
    return list(zip(picked.tolist(), entropy.tolist(), strict=True))


def _numpy_scores(logits: np.ndarray, tokens: Sequence[int]) -> list[Score]:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    total = exp.sum(axis=-1, keepdims=True)
    logp = shifted - np.log(total)
    # -sum p log p, with p log p = 0 where p underflowed to 0.
    entropy = -np.where(exp > 0, exp / total * logp, 0.0).sum(axis=-1)
    picked = logp[np.arange(len(tokens)), list(tokens)]
    return list(zip(picked.tolist(), entropy.tolist(), strict=True))


def eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The tokens that end a document for this model: the tokenizer's and the config's EOS."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(t) for t in source)
    return ids
