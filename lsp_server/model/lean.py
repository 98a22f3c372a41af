"""A decode step for Llama-shaped models in fewer operators than transformers' forward.

A decode step of a small model on the CPU is hundreds of small operators, and
eager PyTorch pays a fixed cost for each, on top of Python's cost of the
modules, decorators and keyword arguments around them: transformers' forward
of one token took 36-38 ms on SmolLM2-135M in int4 (one thread), of which the
4-bit products were 10 ms and the output projection 6.

`LeanStep` computes the same forward for the few tokens of a decode step or a
verification of drafted tokens (at most `int4.ROWS`), over the backend's
growing KV cache, with:
- one 4-bit product for q, k and v and one for gate and up, where the layers
  are 4-bit and their packed weights concatenate (`int4.fuse`);
- rotary cos and sin read from a table computed once by the model's own
  rotary module, instead of recomputed per step;
- q and k rotated in one pass, the KV cache layer written directly, one
  attention call (the query heads of a group folded together for several
  tokens), no mask for a single token.

The arithmetic is transformers' own, operator for operator where it matters
(RMSNorm in float32, the residual sums in the same order, SDPA attention): the
logits of a step are bit for bit those of the plain forward on SmolLM2 in int4
(`codetailor bench int4` checks it at every width), and the tests compare both on
tiny models in float32, bf16 and int4, with and without a LoRA adapter. On
SmolLM2 in int4 over a 1,500-token cache, one token took 0.85x the forward's time
and four tokens 0.61x (docs/benchmarks.md).

Layers it cannot fuse (float weights, or wrapped by PEFT with an adapter) are
called as modules, so adapters, their selection and their disabling work as in
the plain forward. Models of another shape, or caches other than the backend's
growing one (sliding windows, static caches), take the plain forward.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from lsp_server.model import int4
from lsp_server.model.kv_cache import GrowingLayer

# transformers model types whose decoder layers are exactly: RMSNorm, attention with
# q/k/v/o projections (biases on q/k/v for Qwen2) and rotary positions, RMSNorm, a
# SiLU-gated MLP; residual sums after each.
ARCHITECTURES = ("llama", "qwen2")
# Rotary variants whose cos and sin depend on the position alone (not on the length).
STATIC_ROPE = ("default", "linear", "llama3")

_steps: weakref.WeakKeyDictionary[nn.Module, LeanStep] = weakref.WeakKeyDictionary()


def why_not(model: Any) -> str | None:
    """Why `LeanStep` cannot run `model`'s forward, or None where it can."""
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) not in ARCHITECTURES:
        return f"model type {getattr(config, 'model_type', None)!r}"
    inner = getattr(model, "model", None)
    rotary = getattr(inner, "rotary_emb", None)
    if rotary is None or getattr(rotary, "rope_type", None) not in STATIC_ROPE:
        return f"rotary positions {getattr(rotary, 'rope_type', None)!r}"
    if getattr(config, "hidden_act", None) != "silu" or getattr(config, "mlp_bias", False):
        return "not a SiLU-gated MLP without bias"
    if getattr(config, "_attn_implementation", None) != "sdpa":
        return f"attention {getattr(config, '_attn_implementation', None)!r}"
    if getattr(config, "use_sliding_window", False):
        return "sliding-window attention"
    return None


def lean_step(model: Any) -> LeanStep | None:
    """The one `LeanStep` of `model` (its fused 4-bit weights are shared by every backend
    over the model), or None where the model is not of a shape it computes."""
    if why_not(model) is not None:
        return None
    step = _steps.get(model)
    if step is None:
        step = _steps[model] = LeanStep(model)
    return step


@dataclass(frozen=True)
class Fused:
    """Layers that multiply the same input, in one 4-bit product: `members` are the
    layers as they were fused (a member replaced since, by PEFT's LoRA wrapper for
    one, ends the fusion)."""

    members: tuple[nn.Module, ...]
    packed: int4.Packed
    group: int  # the members' 4-bit group size (`int4.fuse` fuses only equal ones)
    bias: torch.Tensor | None

    def current(self, modules: Sequence[nn.Module]) -> bool:
        return all(a is b for a, b in zip(modules, self.members, strict=True))

    def __call__(self, rows: torch.Tensor) -> torch.Tensor:
        """The members' outputs side by side, as one tensor."""
        qweight, scales_and_zeros = self.packed
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(
            rows, qweight, self.group, scales_and_zeros
        )
        return out if self.bias is None else out + self.bias


def fuse(modules: Sequence[nn.Module]) -> Fused | None:
    """`modules` as one 4-bit product, where all are 4-bit layers whose packed weights
    concatenate into the product of all (`int4.fuse`); else None."""
    layers = [m for m in modules if type(m) is int4.Int4Linear]
    if len(layers) != len(modules):
        return None
    biases = [layer.bias for layer in layers]
    if any(b is None for b in biases) and any(b is not None for b in biases):
        return None
    packed = int4.fuse(layers)
    if packed is None:
        return None
    bias = None if biases[0] is None else torch.cat([b.detach() for b in biases if b is not None])
    return Fused(tuple(modules), packed, layers[0].group, bias)


def _attention(
    q: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    """SDPA of `q` (1, heads, n, dim) over `keys` and `values` (1, kv_heads, length, dim),
    with `mask` given folded (its n rows repeated once per query head of a group).

    Several tokens are attended with the query heads that share a key head folded
    into one sequence of queries: (1, kv_heads, group * n, dim) against the keys as
    they are, with no grouped-heads expansion. On the CPU, over a 1,500-token cache
    (SmolLM2's 9 and 3 heads, bf16, one thread), 2 to 9 tokens took 0.48-0.70x the
    time of grouped SDPA with the same mask, with the same output bit for bit. One
    token keeps grouped SDPA, which was the faster there."""
    heads, n, dim = q.shape[1], q.shape[2], q.shape[3]
    kv_heads = keys.shape[1]
    if n == 1 or heads == kv_heads:
        return F.scaled_dot_product_attention(
            q, keys, values, attn_mask=mask, scale=scale, enable_gqa=heads != kv_heads
        )
    folded = q.reshape(1, kv_heads, heads // kv_heads * n, dim)
    out = F.scaled_dot_product_attention(folded, keys, values, attn_mask=mask, scale=scale)
    return out.view(1, heads, n, dim)


def _linear(module: Any, rows: torch.Tensor) -> torch.Tensor:
    """`rows` through `module`: a 4-bit layer's kernel called directly (rows are few), any
    other layer (float, or wrapped by PEFT) as a module."""
    if type(module) is int4.Int4Linear:
        return module.narrow(rows)
    out: torch.Tensor = module(rows)
    return out


class LeanStep:
    """`model`'s forward over a few tokens, in fewer operators (see the module doc)."""

    def __init__(self, model: Any) -> None:
        # Weakly: the step is kept per model in a weak mapping (`lean_step`), and a strong
        # reference from it would keep every model ever stepped alive.
        self._model = weakref.ref(model)
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.intermediate = config.intermediate_size
        self.layers = list(model.model.layers)
        self.qkv = [fuse(self._qkv(layer)) for layer in self.layers]
        self.gate_up = [fuse(self._gate_up(layer)) for layer in self.layers]
        self._cos = self._sin = torch.empty(0)

    @staticmethod
    def _qkv(layer: Any) -> tuple[Any, ...]:
        attn = layer.self_attn
        return attn.q_proj, attn.k_proj, attn.v_proj

    @staticmethod
    def _gate_up(layer: Any) -> tuple[Any, ...]:
        return layer.mlp.gate_proj, layer.mlp.up_proj

    @property
    def model(self) -> Any:
        model = self._model()
        if model is None:
            raise RuntimeError("the model of this lean step is gone")
        return model

    def takes(self, cache: Any, tokens: int) -> bool:
        """Whether this step runs `tokens` new tokens over `cache`: a few, over the
        backend's growing cache layers."""
        layers = getattr(cache, "layers", ())
        return (
            0 < tokens <= int4.ROWS
            and len(layers) == len(self.layers)
            and all(type(layer) is GrowingLayer for layer in layers)
        )

    def __call__(self, cache: Any, ids: torch.Tensor, keep: int) -> torch.Tensor:
        """Append `ids` ((1, n) token ids) to `cache`; the logits of the last `keep`."""
        n = ids.shape[-1]
        past = int(cache.get_seq_length())
        hidden = self.model.get_input_embeddings()(ids)[0]
        cos, sin = self._rotary(past, n, hidden.dtype, hidden.device)
        mask = None
        if n > 1:  # the new tokens see the past and each other up to themselves
            mask = torch.ones(n, past + n, dtype=torch.bool, device=hidden.device).tril(past)
            # one row per query head of a group, as `_attention` folds the queries
            mask = mask.repeat(self.heads // self.kv_heads, 1)
        for index, layer in enumerate(self.layers):
            hidden = self._layer(index, layer, cache.layers[index], hidden, cos, sin, mask)
        hidden = self._norm(hidden[-keep:], self.model.model.norm)
        logits: torch.Tensor = self.model.get_output_embeddings()(hidden)
        return logits

    def _layer(
        self,
        index: int,
        layer: Any,
        kv: Any,
        hidden: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        mask: torch.Tensor | None,
    ) -> torch.Tensor:
        n, heads, kv_heads, dim = hidden.shape[0], self.heads, self.kv_heads, self.head_dim
        attn = layer.self_attn
        x = self._norm(hidden, layer.input_layernorm)
        qk, v = self._project(self.qkv[index], self._qkv(layer), x, (heads + kv_heads) * dim)
        qk = qk.view(n, heads + kv_heads, dim)
        x1, x2 = qk[..., : dim // 2], qk[..., dim // 2 :]
        qk = qk * cos + torch.cat((-x2, x1), dim=-1) * sin
        q = qk[:, :heads].transpose(0, 1)[None]
        keys, values = kv.update(
            qk[:, heads:].transpose(0, 1)[None], v.view(n, kv_heads, dim).transpose(0, 1)[None]
        )
        out = _attention(q, keys, values, mask, attn.scaling)
        hidden = hidden + _linear(attn.o_proj, out[0].transpose(0, 1).reshape(n, heads * dim))
        x = self._norm(hidden, layer.post_attention_layernorm)
        gate, up = self._project(self.gate_up[index], self._gate_up(layer), x, self.intermediate)
        return hidden + _linear(layer.mlp.down_proj, F.silu(gate) * up)

    @staticmethod
    def _project(
        fused: Fused | None, modules: tuple[Any, ...], x: torch.Tensor, split: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`x` through `modules`, their outputs side by side, cut in two after `split`
        columns: (q and k, v) or (gate, up)."""
        if fused is not None and fused.current(modules):
            out = fused(x)
        else:
            out = torch.cat([module(x) for module in modules], dim=-1)
        return out[:, :split], out[:, split:]

    def _norm(self, x: torch.Tensor, norm: Any) -> torch.Tensor:
        """transformers' RMSNorm: normalised in float32, then scaled in the input's dtype."""
        eps = norm.variance_epsilon
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=eps).to(x.dtype)
        result: torch.Tensor = norm.weight * normed
        return result

    def _rotary(
        self, past: int, n: int, dtype: torch.dtype, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of positions past..past+n, shaped to broadcast over the heads, from
        a table the model's rotary module computed (grown by doubling)."""
        end = past + n
        if self._cos.shape[0] < end or self._cos.dtype != dtype or self._cos.device != device:
            size = max(1024, 1 << (end - 1).bit_length())
            positions = torch.arange(size, device=device)[None]
            probe = torch.zeros(1, dtype=dtype, device=device)
            cos, sin = self.model.model.rotary_emb(probe, positions)
            self._cos, self._sin = cos[0], sin[0]
        return self._cos[past:end, None], self._sin[past:end, None]
