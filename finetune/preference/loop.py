"""The preference tuning loop: batches of pairs and unpaired examples, each step's loss the
preference loss (finetune/preference/losses.py) times `preference_weight` plus the anchor's
(finetune/preference/anchor.py) times `anchor_weight`.

The reference is fixed, so its log-probabilities are scored once, before the first
step. Gradients are clipped to norm 1; AdamW runs without weight decay, which would
pull the trained adapter's LoRA weights towards zero, the base model.
"""

from __future__ import annotations

import math
import random
import sys
from typing import Any

from finetune.config import PreferenceConfig
from finetune.data.preferences import PreferenceData
from finetune.preference.anchor import Anchor
from finetune.preference.losses import batch_loss
from finetune.preference.scoring import Scorer
from lsp_server.errors import CodetailorError


def train(
    model: Any,
    scorer: Scorer,
    data: PreferenceData,
    cfg: PreferenceConfig,
    anchor: Anchor | None = None,
) -> list[float]:
    """DPO + KTO steps over the training data, each with the anchor's token loss when there
    is one; returns the loss of each step."""
    import torch

    if not cfg.preference_weight and not (anchor and cfg.anchor_weight):
        raise CodetailorError("preference_weight and anchor_weight are both 0: nothing to train")
    items: list[Any] = list(data.pairs) + list(data.unpaired)
    steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(items) / cfg.batch_size))
    for e in data.examples if cfg.preference_weight else []:  # fixed: score it once, first
        scorer.reference(e)
    if anchor is not None:
        anchor.hold(model)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    order: list[Any] = []
    losses: list[float] = []
    bar = _bar(steps)
    model.train()
    for _ in range(steps):
        if len(order) < cfg.batch_size:
            order += rng.sample(items, len(items))
        batch, order = order[: cfg.batch_size], order[cfg.batch_size :]
        loss, figures = step_loss(model, scorer, batch, cfg, anchor)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        bar.set_postfix(figures, refresh=False)
        bar.update(1)
    bar.close()
    model.eval()
    return losses


def step_loss(
    model: Any, scorer: Scorer, batch: list[Any], cfg: PreferenceConfig, anchor: Anchor | None
) -> tuple[Any, dict[str, str]]:
    """One step's loss, and its parts as the progress bar shows them."""
    import torch

    figures, loss = {}, torch.zeros((), device=scorer.device)
    if cfg.preference_weight:
        preference = batch_loss(scorer, batch, cfg)
        loss = cfg.preference_weight * preference
        figures["preference"] = f"{float(preference.detach()):.4f}"
    if anchor is not None and cfg.anchor_weight:
        code = anchor.loss(model, scorer.device)
        loss = loss + cfg.anchor_weight * code
        figures["anchor"] = f"{float(code.detach()):.4f}"
    return loss, figures


def _bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", desc="preference", file=sys.stderr, dynamic_ncols=True)
