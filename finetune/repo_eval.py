"""The repository measurements an adapter was trained against, for a later run to repeat.

Held-out token loss and next-line exact match on the files `finetune` held out,
with the recipe saved beside the adapter (`finetune.yaml`), so preference
tuning's gate compares like with like. (train.py builds the same data inline;
when it is split into setup/data functions this should call those.)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finetune.config import FinetuneConfig, load_yaml
from finetune.data.examples import Blocks, documents, pack, spread, tokenize
from finetune.evaluate import LineSample, heldout_loss, next_line_exact_match, next_line_samples
from lsp_server.model.adapter_meta import AdapterMeta
from lsp_server.repo.corpus import collect
from lsp_server.repo.files import SOURCE_EXTENSIONS, split_files


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
        extensions = frozenset(e if e.startswith(".") else "." + e for e in cfg.extensions)
        corpus = collect(
            repo,
            max_file_bytes=cfg.max_file_bytes,
            extensions=extensions or SOURCE_EXTENSIONS,
            near_duplicate_threshold=cfg.near_duplicate_threshold,
        )
        _, held_paths = split_files([f.path for f in corpus.files], cfg.holdout)
        held = [f for f in corpus.files if f.path in set(held_paths)]
        return cls(cfg, held, next_line_samples(held, cfg.match_samples, seed))

    def blocks(self, tokenizer: Any, fmt: Any) -> Blocks:
        if self._blocks is None:
            cfg = self.cfg
            eos = tokenizer.eos_token_id
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
            pairs = [(f.path, f.text) for f in self.held]
            texts = documents(fmt, pairs, seq_len=cfg.seq_len, header=cfg.path_header)
            packed = pack(tokenize(tokenizer, texts, eos), cfg.seq_len, pad)
            self._blocks = spread(packed, cfg.eval_blocks)
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
