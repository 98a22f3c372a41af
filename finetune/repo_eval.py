"""The repository measurements an adapter was trained against, for a later run to repeat.

Held-out token loss and next-line exact match on the files `finetune` held out,
with the recipe saved beside the adapter (`finetune.yaml`), so preference
tuning's gate compares like with like. The split and the held-out sequences
are train.py's own functions (`split_repository`, `heldout_sequences`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig, load_yaml
from finetune.data.examples import Blocks, spread
from finetune.evaluate import LineSample, heldout_loss, next_line_exact_match, next_line_samples
from finetune.train import heldout_sequences, split_repository
from lsp_server.model.adapter_meta import AdapterMeta


@dataclass
class RepoEval:
    """The held-out files of a repository, as the adapter's recipe splits them."""

    cfg: FinetuneConfig
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
        _, _, held = split_repository(cfg, repo)
        return cls(cfg, held, next_line_samples(held, cfg.match_samples, seed))

    def blocks(self, tokenizer: Any, fmt: Any) -> Blocks:
        if self._blocks is None:
            packed = heldout_sequences(self.cfg, fmt, tokenizer, self.held)
            self._blocks = spread(packed, self.cfg.eval_blocks)
        return self._blocks

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
