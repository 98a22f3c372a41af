"""The engine's `Backend` for a transformers causal LM, with a `DynamicCache` as KV cache.

Besides the greedy token, each chosen position is scored when the engine asks
(`greedy`'s `scores`): the log-softmax of the row, in float32, gives the
token's log-probability and the distribution's entropy. The row's logits are
already computed; the extra work is a pass over the vocabulary per kept row.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from transformers import Cache, DynamicCache
from transformers.cache_utils import DynamicLayer

from lsp_server.model import int4
from lsp_server.model.engine import DRAFT_TOKENS, Score
from lsp_server.model.kv_cache import GrowingLayer
from lsp_server.model.lean import lean_step


class TransformersBackend:
    """Runs a `PreTrainedModel` chunk by chunk on its own device, greedy, without autograd.

    Chunks of a few tokens (decode steps, verifications of drafted tokens) run through
    the model's `LeanStep` where it has one (lean.py; `lean=False`: always the model's
    own forward), longer ones (prefill) through the model's forward."""

    def __init__(self, model: Any, eos_token_ids: Iterable[int], *, lean: bool = True) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.eos_token_ids = frozenset(int(t) for t in eos_token_ids)
        # transformers 5.2x renamed `past_key_values` to `cache`; accept both.
        params = inspect.signature(model.forward).parameters
        self._cache_kwarg = "cache" if "cache" in params else "past_key_values"
        # Decode steps and verifications in fewer operators, where the model's shape allows.
        self.lean = lean_step(model) if lean else None
        # The drafts a forward verifies cheaply (the engine's default for this backend).
        four_bit = any(isinstance(m, int4.Int4Linear) for m in model.modules())
        self.draft_tokens = int4.DRAFT_TOKENS if four_bit else DRAFT_TOKENS

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
        if self.lean is not None and self.lean.takes(cache, len(token_ids)):
            return self.lean(cache, ids, keep)
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
        the `Score` of each up to the first that differs from the token fed after it:
        the engine keeps no more).

        The engine feeds the last emitted token (or the prompt's last chunk) and
        the drafted ones: only the positions it compares need logits.
        """
        keep = keep or len(token_ids)
        logits = self._run(cache, token_ids, keep=keep)
        return greedy(
            logits, allowed, scores=scores, fed_after=token_ids[len(token_ids) - keep + 1 :]
        )

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
    fed_after: Sequence[int] = (),
) -> list[int]:
    """The argmax of each row of `logits`; the first row's among `allowed` when given.
    With `scores`, each chosen token's `Score` is appended there (see `token_scores`),
    up to the first row whose token differs from `fed_after`'s at that row (the token
    fed after that position, a draft): the rows after it decode nothing kept."""
    rows = logits.float().numpy() if logits.device.type == "cpu" else None
    if rows is not None:  # numpy's argmax over a float32 row: a fifth of torch's over bf16
        tokens = [int(t) for t in rows.argmax(axis=-1).tolist()]
    else:
        tokens = [int(t) for t in logits.argmax(dim=-1).tolist()]
    if allowed is not None:
        choices = torch.as_tensor(list(allowed), dtype=torch.long, device=logits.device)
        tokens[0] = int(choices[logits[0, choices].argmax()])
    if scores is not None:
        kept = len(tokens)
        for i, (token, draft) in enumerate(zip(tokens, fed_after, strict=False)):
            if token != draft:
                kept = i + 1
                break
        if rows is not None:
            scores.extend(_numpy_scores(rows[:kept], tokens[:kept]))
        else:
            scores.extend(token_scores(logits[:kept], tokens[:kept]))
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


# Masked logits (-inf) are raised to this: their probability is still 0, and 0 times it
# is 0 where 0 times -inf would be undefined.
_FLOOR = -1e30


def _numpy_scores(logits: np.ndarray, tokens: Sequence[int]) -> list[Score]:
    """Row by row, in few passes over the vocabulary: with x the row less its maximum,
    Z = sum(exp x), log p(t) = x[t] - log Z and the entropy -sum p log p = log Z -
    sum(exp(x) x) / Z."""
    scores: list[Score] = []
    for row, token in zip(logits, tokens, strict=True):
        shifted = row - row.max()
        np.maximum(shifted, _FLOOR, out=shifted)
        exp = np.exp(shifted)
        total = float(exp.sum())
        log_total = math.log(total)
        entropy = log_total - float(np.dot(exp, shifted)) / total
        scores.append((float(shifted[token]) - log_total, max(entropy, 0.0)))
    return scores


def eos_ids(tokenizer: Any, model: Any) -> set[int]:
    """The tokens that end a document for this model: the tokenizer's and the config's EOS."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(t) for t in source)
    return ids
