"""A model with a real model's shape and random weights, built from a config in code.

Speed on a GPU depends on the shapes, not on the weights, so it is measured
without a download: `qwen_coder_config()` holds Qwen2.5-Coder-1.5B's sizes (as
its config.json on the Hugging Face hub states them), and `random_model` builds
a model from it on the device, seeded. With `tiny=True` the same architecture at
a size a CPU runs in a second (the benchmarks' smoke runs in CI). Quality needs
real weights: greedy choices of random weights hang on near-ties.
"""

from __future__ import annotations

from typing import Any

QWEN_CODER_NAME = "Qwen2.5-Coder-1.5B shape, random weights"
TINY_NAME = "tiny Qwen2 shape, random weights"


def qwen_coder_config(*, tiny: bool = False) -> Any:
    """Qwen2.5-Coder-1.5B's `Qwen2Config` (every layer full attention), or a tiny one."""
    from transformers import Qwen2Config

    sizes: dict[str, Any] = {
        "vocab_size": 151_936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32_768,
    }
    if tiny:
        sizes = {
            "vocab_size": 512,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
        }
    return Qwen2Config(
        **sizes,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        use_sliding_window=False,
        bos_token_id=sizes["vocab_size"] - 1,
        eos_token_id=sizes["vocab_size"] - 1,
    )


def random_model(config: Any, device: str, dtype: str, *, seed: int = 0) -> Any:
    """A causal LM of `config`'s shape with seeded random weights, built on `device` in
    `dtype` (no CPU copy of a 1.5B model first), in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, dtype))
    return model.eval()


def text_ids(text: str, vocab_size: int, count: int) -> list[int]:
    """`count` token ids standing for `text` without a tokenizer: its UTF-8 bytes (repeated
    as needed), so the prompt repeats as code does. Below `vocab_size` - 1 (the EOS)."""
    data = text.encode() or b" "
    data = data * (count // len(data) + 1)
    return [b % (vocab_size - 1) for b in data[:count]]
