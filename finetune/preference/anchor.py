"""The anchor: what holds the adapter to the repository's code while preferences pull it.

Preferences alone move the adapter away from the code it was trained on (its
held-out loss rises), so every step also takes `anchor_weight` times a loss on
`anchor_rows` blocks of the repository's training files, built as the adapter's
recipe built them, as InstructGPT mixed pre-training gradients into its PPO
updates. With `anchor_kind` "tokens" that loss is their token loss, which also
trains the adapter further on the code; with "kl" it is the KL divergence from
the starting adapter's next-token distributions on the same blocks, which holds
its predictions where they were instead.
"""

from __future__ import annotations

import random
from typing import Any

from finetune.config import ANCHOR_KINDS, PreferenceConfig, one_of
from finetune.data.examples import Blocks
from finetune.preference.scoring import as_of, evaluating, snapshot
from lsp_server.errors import CodetailorError


class Anchor:
    """The repository's training blocks, `rows` a step in a seeded shuffled order, and what
    they hold the adapter to: with `kind` "tokens" their token loss keeps the adapter a model
    of the code while preferences pull it (it also trains it further on the code); with "kl"
    the KL divergence from the starting adapter's next-token distributions on them keeps
    its predictions there instead (from `hold`, which `train` calls before its first step)."""

    KINDS = ANCHOR_KINDS

    def __init__(self, blocks: Blocks, rows: int, seed: int, kind: str = "tokens") -> None:
        one_of("anchor_kind", kind, self.KINDS)
        self.blocks, self.rows, self.kind = blocks, max(1, rows), kind
        self._rng = random.Random(seed)
        self._order: list[int] = []
        self._start: dict[str, Any] = {}

    @classmethod
    def for_repository(
        cls, repo_eval: Any, tokenizer: Any, fmt: Any, cfg: PreferenceConfig
    ) -> Anchor | None:
        """The anchor `cfg` asks for on the repository's training files (RepoEval's
        split), or None (no weight, or no training blocks)."""
        if not cfg.anchor_weight:
            return None
        blocks = repo_eval.training_blocks(tokenizer, fmt, cfg.anchor_seq_len)
        return cls(blocks, cfg.anchor_rows, cfg.seed, cfg.anchor_kind) if blocks.ids else None

    def hold(self, model: Any) -> None:
        """Take the model's trainable weights now as the start a "kl" anchor holds it to."""
        if self.kind == "kl":
            self._start = snapshot(model)

    def loss(self, model: Any, device: Any) -> Any:
        from finetune.evaluate import to_batch

        n = len(self.blocks.ids)
        while len(self._order) < min(self.rows, n):
            self._order += self._rng.sample(range(n), n)
        rows, self._order = self._order[: self.rows], self._order[self.rows :]
        ids, mask, labels = (t.to(device) for t in to_batch(self.blocks, rows))
        if self.kind == "tokens":
            return model(input_ids=ids, attention_mask=mask, labels=labels).loss
        return self._kl(model, ids, mask)

    def _kl(self, model: Any, ids: Any, mask: Any) -> Any:
        """Mean over the blocks' tokens of KL(start || now) between next-token distributions;
        the start's come from the same network with its starting weights swapped in for one
        forward (torch.func, the live weights untouched), without dropout."""
        import torch

        if not self._start:
            raise CodetailorError("a kl anchor needs hold(model) before its first loss")
        with torch.no_grad(), evaluating(model):
            logits = as_of(model, self._start)(input_ids=ids, attention_mask=mask).logits
            start = logits.float().log_softmax(-1)
        current = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        kl = torch.nn.functional.kl_div(current, start, log_target=True, reduction="none")
        return kl.sum(-1)[mask.bool()].mean()
