"""Tiny models built in code: a byte-level BPE tokenizer and a 2-layer Llama.

Nothing is downloaded. Weights are random but seeded, so every run builds the
same model; that is enough to exercise loading, the engine and the server. The
tests build theirs here (tests/tiny.py), and so do the benchmarks' smoke runs
(`bench gpu --tiny`, `bench overhead --tiny`), which must run without the real model.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CORPUS = [
    "def add(a, b):\n    return a + b\n",
    "import json\nimport os\n\n\ndef load(path):\n    with open(path) as f:\n"
    "        return json.load(f)\n",
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n",
    "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n",
    "function greet(name) {\n  return `hello ${name}`;\n}\n",
    'fn main() {\n    let v = vec![1, 2, 3];\n    println!("{:?}", v);\n}\n',
]

FIM_TOKENS = ["<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>"]
# SmolLM2's added tokens after its EOS: no FIM markers, but spare ones (smollm2-fim).
SMOLLM2_TOKENS = [
    "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>", "<filename>",
    "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
    "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>",
    "<empty_output>",
]  # fmt: skip


def build_tokenizer(out: Path, extra_special: list[str] | None = None, vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<|endoftext|>", *(extra_special or [])]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", additional_special_tokens=special[1:]
    )
    fast.save_pretrained(out)
    return fast


def build_model(
    out: Path,
    *,
    fim: bool = False,
    seed: int = 0,
    dtype: str = "float32",
    layers: int = 2,
    special: list[str] | None = None,
) -> Path:
    """Save a tiny Llama and its tokenizer to `out` in Hugging Face layout; return `out`.
    `special`: the tokenizer's added tokens (default: StarCoder's FIM ones with `fim`)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(
        out, special if special is not None else FIM_TOKENS if fim else None
    )
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    # Larger-than-default weights make the logits peaked, so greedy choices
    # are far from ties and vary with the context.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    model.save_pretrained(out, safe_serialization=True)
    return out


def build_tiny_model_quietly(prefix: str = "codetailor-tiny-") -> Path:
    """`build_model` into a new temporary folder, keeping stdout clean: the tokenizer
    trainer prints to file descriptor 1, where a benchmark writes its results."""
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        return build_model(Path(tempfile.mkdtemp(prefix=prefix)))
    finally:
        os.dup2(saved, 1)
        os.close(saved)
