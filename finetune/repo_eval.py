"""The repository measurements an adapter was trained against, for a later run to repeat.

Held-out token loss and next-line exact match on the files `finetune` held out,
with the recipe saved beside the adapter (`finetune.yaml`), so preference
tuning's gate compares like with like; and the training files' blocks, which
preference tuning keeps training on as its anchor. The split and the sequences
are train.py's own functions (`split_repository`, `training_sequences`,
`heldout_sequences`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig, load_yaml
from finetune.data.examples import Blocks, spread
from finetune.evaluate import LineSample, heldout_loss, next_line_exact_match, next_line_samples
from finetune.train import heldout_sequences, split_repository, training_sequences
from lsp_server.model.adapter_meta import AdapterMeta


@dataclass
class RepoEval:
    """The held-out files of a repository, as the adapter's recipe splits them."""

    cfg: FinetuneConfig
    train: list[Any]  # SourceFile
    held: list[Any]  # SourceFile
    lines: list[LineSample]
    _blocks: Blocks | None = None

    @classmethod
    def for_adapter(
        cls, repo: Path, meta: AdapterMeta, adapter: Path, overrides: dict[str, Any], seed: int
    ) -> RepoEval:
        """The recipe in `adapter/finetune.yaml` (or the defaults), `overrides` on top."""
        recipe = adapter / "finetune.yaml"
        values = load_yaml(recipe) if recipe.is_file() else {}
        values |= {"repo": str(repo), "out": str(adapter)} | overrides
        base = meta.base_model.name if meta.base_model else "smollm2-135m"
        values.setdefault("model", base)
        cfg = FinetuneConfig.from_dict(values)
        _, train, held = split_repository(cfg, repo)
        return cls(cfg, train, held, next_line_samples(held, cfg.match_samples, seed))

    def blocks(self, tokenizer: Any, fmt: Any) -> Blocks:
        if self._blocks is None:
            packed = heldout_sequences(self.cfg, fmt, tokenizer, self.held)
            self._blocks = spread(packed, self.cfg.eval_blocks)
        return self._blocks

    def training_blocks(self, tokenizer: Any, fmt: Any, seq_len: int) -> Blocks:
        """The training files as the recipe trains on them (FIM included), packed to at most
        `seq_len` tokens a block."""
        cfg = replace(self.cfg, seq_len=min(seq_len, self.cfg.seq_len))
        return training_sequences(cfg, fmt, tokenizer, self.train)

    def measure(
        self, model: Any, tokenizer: Any, fmt: Any, device: Any, progress: bool = False
    ) -> dict[str, Any]:
        """Held-out loss and next-line exact match of `model` (a PEFT model is fine)."""
        cfg = self.cfg
        return {
            "heldout_loss": heldout_loss(
                model, self.blocks(tokenizer, fmt), cfg.batch_size, device, progress=progress
            ),
            "next_line_exact_match": next_line_exact_match(
                model,
                tokenizer,
                fmt,
                self.lines,
                window_tokens=cfg.match_window_tokens,
                max_tokens=cfg.match_max_tokens,
                progress=progress,
            ),
            "match_samples": len(self.lines),
        }
