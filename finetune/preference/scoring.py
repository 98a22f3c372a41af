"""Log-probabilities of feedback examples under the adapter being tuned and under its reference.

An example is a prompt (rebuilt as the server laid it out) and a completion (what
was suggested, or what the user wrote instead). Only the completion's tokens are
scored, after the prompt's last `max_prompt_tokens` tokens: the end of the prompt
is what decides the completion, and the cost on a CPU grows with the length.
The reference is fixed, so its log-probabilities are computed once per example.
The implicit reward of DPO (policy minus reference log-probability) is what the
gate ranks kept suggestions against rejected ones by.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from finetune.config import REFERENCES, one_of
from finetune.data.preferences import PreferenceData, PreferenceExample


def encode(tokenizer: Any, example: PreferenceExample, max_prompt_tokens: int) -> tuple[list, int]:
    """(token ids, index of the first completion token): the prompt's last tokens, then the
    completion as the tokenizer splits prompt + completion together."""
    prompt_ids = tokenizer.encode(example.prompt, add_special_tokens=False)
    full = tokenizer.encode(example.prompt + example.completion, add_special_tokens=False)
    start = 0
    while start < min(len(prompt_ids), len(full)) and prompt_ids[start] == full[start]:
        start += 1
    start = min(start, len(full) - 1)
    cut = max(0, start - max_prompt_tokens)
    return full[cut:], max(start - cut, 1)


def completion_logp(model: Any, ids: list[int], start: int, device: Any) -> Any:
    """Sum of log-probabilities of ids[start:] given what comes before."""
    import torch

    tensor = torch.tensor([ids], device=device)
    logits = model(input_ids=tensor).logits[0, start - 1 : -1].float()
    targets = tensor[0, start:]
    return torch.log_softmax(logits, -1).gather(1, targets[:, None]).sum()


class Scorer:
    """Log-probabilities of examples under the policy and (cached) under the reference:
    the base model (`reference="base"`, the adapter disabled) or the adapter as it was when
    the scorer was made (`"start"`: DPO's own choice, the model it starts from)."""

    REFERENCES = REFERENCES

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_prompt_tokens: int,
        device: Any,
        reference: str = "base",
    ) -> None:
        one_of("reference", reference, self.REFERENCES)
        self.model, self.device = model, device
        self.tokenizer, self.max_prompt_tokens = tokenizer, max_prompt_tokens
        self._encoded: dict[str, tuple[list, int]] = {}
        self._ref: dict[str, float] = {}
        self._start = snapshot(model) if reference == "start" else None

    def encoded(self, e: PreferenceExample) -> tuple[list, int]:
        if e.id not in self._encoded:
            self._encoded[e.id] = encode(self.tokenizer, e, self.max_prompt_tokens)
        return self._encoded[e.id]

    def policy(self, e: PreferenceExample) -> Any:
        return completion_logp(self.model, *self.encoded(e), self.device)

    def tokens(self, e: PreferenceExample) -> int:
        """How many completion tokens `e` has."""
        ids, start = self.encoded(e)
        return max(len(ids) - start, 1)

    def reference(self, e: PreferenceExample) -> float:
        """The reference's log-probability: the same network with the adapter disabled, or
        with its starting weights."""
        import torch

        if e.id not in self._ref:
            with torch.no_grad(), evaluating(self.model):
                if self._start is not None:
                    start = as_of(self.model, self._start)
                    logp = completion_logp(start, *self.encoded(e), self.device)
                else:
                    with self.model.disable_adapter():
                        logp = completion_logp(self.model, *self.encoded(e), self.device)
            self._ref[e.id] = float(logp)
        return self._ref[e.id]

    def rewards(self, examples: list[PreferenceExample]) -> list[float]:
        """Implicit rewards: policy minus reference log-probability."""
        import torch

        with torch.no_grad(), evaluating(self.model):
            return [float(self.policy(e)) - self.reference(e) for e in examples]


def preference_accuracy(scorer: Scorer, data: PreferenceData) -> float | None:
    """How often a kept suggestion gets a higher implicit reward than a rejected one: over
    the pairs, and over every (kept, rejected) combination of the unpaired (ties count half)."""
    examples = data.examples
    rewards = dict(zip([e.id for e in examples], scorer.rewards(examples), strict=True))
    comparisons = [(c.id, r.id) for c, r in data.pairs]
    kept = [e.id for e in data.unpaired if e.desirable]
    rejected = [e.id for e in data.unpaired if not e.desirable]
    comparisons += [(k, r) for k in kept for r in rejected]
    if not comparisons:
        return None
    wins = sum(
        1.0 if rewards[k] > rewards[r] else 0.5 if rewards[k] == rewards[r] else 0.0
        for k, r in comparisons
    )
    return wins / len(comparisons)


# --- the model at other weights, and out of training mode -----------------------------------


@contextmanager
def evaluating(model: Any) -> Iterator[None]:
    """The model in eval mode (no dropout) for a while, then back in the mode it was in:
    references and rewards are scores, not training samples."""
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def snapshot(model: Any) -> dict[str, Any]:
    """A copy of the model's trainable (LoRA) weights as they are now."""
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def as_of(model: Any, weights: dict[str, Any]) -> Any:
    """The model as a function with `weights` in place of its own, for a forward pass
    (torch.func: the live weights are left untouched, so autograd's record stays valid)."""
    import torch

    return lambda **inputs: torch.func.functional_call(model, weights, (), inputs, strict=False)
