"""The lean decode step (lsp_server/model/lean.py) computes what the model's own forward does."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from lsp_server.model import int4, lean
from lsp_server.model.backend import TransformersBackend
from lsp_server.model.engine import Engine

PAST = [5, 17, 33, 2, 80, 41, 7, 9, 60, 12, 3, 99, 21, 44, 8, 70, 16, 28, 91, 50]
NEW = [11, 64, 37, 5, 88, 19, 23, 42, 6]


def build(kind: str = "llama", dtype: torch.dtype = torch.float32, seed: int = 0) -> Any:
    """A random two-layer model whose q, k, v, gate and up rows fill the 4-bit kernel's
    64-row tiles (so that they fuse, as SmolLM2's do), with peaked logits."""
    shape = dict(
        vocab_size=128,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    torch.manual_seed(seed)
    if kind == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape, attn_implementation="sdpa"))
    else:
        model = LlamaForCausalLM(LlamaConfig(**shape, attn_implementation="sdpa"))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
            elif name.endswith("bias"):
                p.normal_(0, 0.5)
    return model.to(dtype).eval()


def logits_both(model: Any, n: int) -> tuple[torch.Tensor, torch.Tensor, Any, Any]:
    """The logits of `n` new tokens after PAST through the plain forward and the lean
    step, each over its own cache holding PAST; and the two caches afterwards."""
    plain, fast = TransformersBackend(model, [], lean=False), TransformersBackend(model, [])
    assert fast.lean is not None
    results = []
    for backend in (plain, fast):
        cache = backend.new_cache()
        with torch.inference_mode():
            backend._run(cache, PAST, keep=1)  # prefill: the model's own forward in both
            results.append((backend._run(cache, NEW[:n], keep=n), cache))
    (a, cache_a), (b, cache_b) = results
    return a, b, cache_a, cache_b


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("n", [1, 3, int4.ROWS])
def test_same_logits_and_cache_as_the_forward_in_float32(kind: str, n: int) -> None:
    a, b, cache_a, cache_b = logits_both(build(kind), n)
    assert a.shape == b.shape == (n, 128)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert torch.equal(a.argmax(-1), b.argmax(-1))
    assert cache_a.get_seq_length() == cache_b.get_seq_length() == len(PAST) + n
    for layer_a, layer_b in zip(cache_a.layers, cache_b.layers, strict=True):
        assert torch.allclose(layer_a.keys, layer_b.keys, atol=1e-5)
        assert torch.allclose(layer_a.values, layer_b.values, atol=1e-5)


def int4_model(kind: str = "llama") -> Any:
    model = build(kind, torch.bfloat16)
    int4.quantize_int4(model)
    return model


needs_int4 = pytest.mark.skipif(not int4.kernel_available(), reason="torch without int4 kernels")


@needs_int4
@pytest.mark.parametrize("kind", ["llama", "qwen2"])
@pytest.mark.parametrize("n", [1, 4, int4.ROWS])
def test_same_logits_as_the_forward_in_int4(kind: str, n: int) -> None:
    """Fused 4-bit products (where the CPU's tiles allow), bf16 elsewhere: the same
    numbers as the forward (bit for bit on SmolLM2 here; bf16's rounding allowed)."""
    a, b, _, _ = logits_both(int4_model(kind), n)
    assert torch.allclose(a.float(), b.float(), atol=2e-2, rtol=1e-2)
    assert torch.equal(a.argmax(-1), b.argmax(-1))


@needs_int4
def test_fused_layers_share_the_fused_weight_and_multiply_as_before() -> None:
    model = int4_model()
    attn = model.model.layers[0].self_attn
    layers = [attn.q_proj, attn.k_proj, attn.v_proj]
    x = torch.randn(3, 128, dtype=torch.bfloat16)
    before = torch.cat([layer(x) for layer in layers], dim=-1)
    packed = int4.fuse(layers)
    if packed is None:  # this CPU's kernel tiles do not take 64-row layers: nothing fused
        assert torch.equal(torch.cat([layer(x) for layer in layers], dim=-1), before)
        return
    qweight, scales_and_zeros = packed
    fused = torch.ops.aten._weight_int4pack_mm_for_cpu(x, qweight, int4.GROUP, scales_and_zeros)
    assert torch.equal(fused, before)
    assert torch.equal(torch.cat([layer(x) for layer in layers], dim=-1), before)
    storage = qweight.untyped_storage().data_ptr()
    assert all(layer.qweight.untyped_storage().data_ptr() == storage for layer in layers)


@needs_int4
def test_layers_whose_rows_do_not_fill_the_tiles_are_not_fused_wrongly() -> None:
    """16-row layers: their packed weights do not concatenate into the stacked weight's
    on AVX-512 (64-row tiles). `fuse` declines rather than compute something else."""
    layers = [int4.Int4Linear(nn.Linear(64, 16, bias=False).to(torch.bfloat16)) for _ in range(3)]
    x = torch.randn(1, 64, dtype=torch.bfloat16)
    before = torch.cat([layer(x) for layer in layers], dim=-1)
    packed = int4.fuse(layers)
    if packed is not None:
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(x, packed[0], int4.GROUP, packed[1])
        assert torch.equal(out, before)
    assert torch.equal(torch.cat([layer(x) for layer in layers], dim=-1), before)


@needs_int4
def test_a_lora_adapter_wrapping_the_layers_is_applied() -> None:
    """PEFT wraps q/k/v/o and the MLP's layers: the lean step calls them as modules (no
    fused product that would skip the adapter), selected and disabled as in the forward."""
    from peft import LoraConfig, get_peft_model

    model = int4_model()
    step = TransformersBackend(model, []).lean  # as served: the adapter comes after the load
    assert step is not None
    config = LoraConfig(
        r=4, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "down_proj"]
    )
    peft = get_peft_model(model, config)
    fused = [
        f
        for f, layer in zip(step.qkv, step.layers, strict=True)
        if f and f.current(step._qkv(layer))
    ]
    assert not fused  # the wrapped layers are not the fused ones any more
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    a, b, _, _ = logits_both(model, 3)
    assert torch.allclose(a.float(), b.float(), atol=2e-2, rtol=1e-2)
    with peft.disable_adapter():
        off_a, off_b, _, _ = logits_both(model, 3)
    assert torch.allclose(off_a.float(), off_b.float(), atol=2e-2, rtol=1e-2)
    assert (a.float() - off_a.float()).abs().max() > 0.1  # the adapter did something


def test_greedy_generation_with_drafts_is_the_same() -> None:
    """Through the engine (prompt-lookup drafts verified several tokens at a time): the
    same tokens as with the model's own forward."""
    model = build(dtype=torch.float64, seed=3)
    prompt = PAST * 3
    plain = Engine(TransformersBackend(model, [], lean=False)).generate(prompt, max_new_tokens=40)
    fast = Engine(TransformersBackend(model, [])).generate(prompt, max_new_tokens=40)
    assert fast.tokens == plain.tokens and len(fast.tokens) == 40


def test_models_of_another_shape_take_the_forward() -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    assert lean.why_not(gpt2) is not None
    assert TransformersBackend(gpt2, []).lean is None
    eager = build()
    eager.config._attn_implementation = "eager"
    assert "attention" in (lean.why_not(eager) or "")


def test_only_few_tokens_over_the_growing_cache() -> None:
    model = build()
    backend = TransformersBackend(model, [])
    step = backend.lean
    assert step is not None and lean.lean_step(model) is step  # one per model
    cache = backend.new_cache()
    assert step.takes(cache, 1) and step.takes(cache, int4.ROWS)
    assert not step.takes(cache, int4.ROWS + 1) and not step.takes(cache, 0)
    from transformers import DynamicCache

    assert not step.takes(DynamicCache(), 1)  # not the backend's cache layers


@needs_int4
def test_4_bit_weights_draft_as_many_tokens_as_one_kernel_block_takes() -> None:
    """The engine drafts what its backend verifies cheaply: 3 after a 4-bit model's
    token (one 4-row block of the kernel), `DRAFT_TOKENS` for float weights, what the
    caller says when it says."""
    from lsp_server.model.engine import DRAFT_TOKENS

    assert Engine(TransformersBackend(int4_model(), [])).draft_tokens == int4.DRAFT_TOKENS == 3
    assert Engine(TransformersBackend(build(), [])).draft_tokens == DRAFT_TOKENS
    assert Engine(TransformersBackend(int4_model(), []), draft_tokens=5).draft_tokens == 5


def test_a_model_no_longer_used_is_freed() -> None:
    """The per-model step does not keep its model alive (a server that loads another
    model must get the old one's memory back)."""
    import gc
    import weakref

    model = build()
    TransformersBackend(model, [])
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
