"""The preference losses: DPO on pairs, KTO on unpaired labels, and a token loss on the
chosen side, mixed into one batch loss.

Most pairs are what the user typed at a place against the suggestion they did not
keep there. DPO only separates the two; the token loss on what they typed (times
`sft_weight`) pulls the model towards writing it, and without it DPO and KTO make
the adapter a worse model of the code (docs/benchmarks.md, "Learning from
feedback"). A log also holds suggestions with no counterpart at their place (kept
whole, or rejected with nothing typed): KTO learns from those one at a time.

Both losses are written here (a few lines each) rather than taken from TRL: TRL
brings datasets, pandas and pyarrow, and DPO pairs and KTO labels would need two
of its trainers, where here they share one batch, one optimizer and the gate's
models.
"""

from __future__ import annotations

from typing import Any

from finetune.config import PreferenceConfig
from finetune.data.preferences import PreferenceExample
from finetune.preference.scoring import Scorer


def dpo_loss(pc: Any, pr: Any, rc: Any, rr: Any, beta: float) -> Any:
    """DPO: -log sigmoid(beta * ((chosen - ref chosen) - (rejected - ref rejected)))."""
    import torch

    return -torch.nn.functional.logsigmoid(beta * ((pc - rc) - (pr - rr))).mean()


def kto_loss(
    policy: Any, ref: Any, desirable: Any, beta: float, wd: float = 1.0, wu: float = 1.0
) -> Any:
    """KTO with unpaired labels: desirable completions pushed above the reference point,
    undesirable ones below it. The reference point is the batch's mean log-ratio, floored
    at 0 and detached (the KL estimate of the KTO paper)."""
    import torch

    ratio = policy - ref
    z = ratio.detach().mean().clamp(min=0)
    up = wd * (1 - torch.sigmoid(beta * (ratio - z)))
    down = wu * (1 - torch.sigmoid(beta * (z - ratio)))
    return torch.where(desirable, up, down).mean()


def batch_loss(scorer: Scorer, items: list[Any], cfg: PreferenceConfig) -> Any:
    """The mean loss of a batch of pairs (tuples) and unpaired examples: DPO on the pairs,
    KTO (times `kto_weight`) on the rest, plus `sft_weight` times the chosen side's mean
    token loss (a pull towards what the user wrote, which DPO alone does not give)."""
    import torch

    pairs = [i for i in items if isinstance(i, tuple)]
    single = [i for i in items if not isinstance(i, tuple)]
    losses = []
    chosen: list[tuple[PreferenceExample, Any]] = []
    if pairs:
        pc = torch.stack([scorer.policy(c) for c, _ in pairs])
        pr = torch.stack([scorer.policy(r) for _, r in pairs])
        rc = torch.tensor([scorer.reference(c) for c, _ in pairs], device=pc.device)
        rr = torch.tensor([scorer.reference(r) for _, r in pairs], device=pc.device)
        losses.append(dpo_loss(pc, pr, rc, rr, cfg.beta) * len(pairs))
        chosen += [(c, pc[n]) for n, (c, _) in enumerate(pairs)]
    if single:
        p = torch.stack([scorer.policy(e) for e in single])
        r = torch.tensor([scorer.reference(e) for e in single], device=p.device)
        labels = torch.tensor([e.desirable for e in single], device=p.device)
        kto = kto_loss(p, r, labels, cfg.beta, cfg.desirable_weight, cfg.undesirable_weight)
        losses.append(cfg.kto_weight * kto * len(single))
        chosen += [(e, p[n]) for n, e in enumerate(single) if e.desirable]
    if cfg.sft_weight and chosen:
        nll = torch.stack([-logp / scorer.tokens(e) for e, logp in chosen]).sum()
        losses.append(cfg.sft_weight * nll)
    return sum(losses) / len(items)
