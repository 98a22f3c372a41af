"""Choose `finetune --feedback`'s settings on the feedback log alone, never on held-out files.

    python -m finetune.preference_sweep REPO --adapter DIR --set sft_weight=0,1 --set lr=1e-4

The log's places are split as `finetune --feedback` splits them (`heldout_feedback`,
by place); the tuning runs train on the first part and are compared on the second
(the validation part), which the run that follows also keeps out of training. For
each combination of `--set` values this prints, on the validation part:

- `preference_accuracy`: as the gate computes it;
- `chosen_nll`: the mean token loss of what the user kept or wrote instead;
- `offline_accepted`: of the validation suggestions whose place the user finished
  (a `typed` event), how many greedy completions (`Completer.complete`, line mode,
  `max_tokens`) the simulated user's rule would accept against what was typed there.

The reference log-probabilities are computed once per (reference, dtype, prompt
tokens), what they depend on, and shared by the combinations that agree on those.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path
from typing import Any

from finetune.config import PreferenceConfig, parse_setting
from finetune.data.preferences import preference_data, split_by_place
from finetune.preference.anchor import Anchor
from finetune.preference.loop import train
from finetune.preference.records import load_records, prompt_builder
from finetune.preference.run import trainable_adapter
from finetune.preference.scoring import Scorer, preference_accuracy
from finetune.repo_eval import RepoEval


def offline_acceptance(model: Any, tokenizer: Any, fmt: Any, records: list[Any], cfg: Any) -> int:
    """How many of `records` (with a `typed` event) get a greedy completion that the
    simulated user would accept against what was typed there."""
    from lsp_server.measure.simulated_user import accepted_text
    from lsp_server.model.factory import weights_completer

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base.eval()
    completer = weights_completer(base, tokenizer, fmt, cfg.window)
    accepted = 0
    for r in records:
        prefix = "\n" * r.shown.prefix_start_line + r.shown.prefix
        text = prefix + r.shown.suffix
        result = completer.complete(
            text, len(prefix), max_tokens=cfg.max_tokens, mode="line", path=r.shown.path
        )
        accepted += bool(accepted_text(result.text, str(r.typed)))
    return accepted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finetune.preference_sweep")
    parser.add_argument("repo")
    parser.add_argument("--adapter", required=True, help="the adapter finetune --feedback tunes")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        help="NAME=V1,V2: values of a PreferenceConfig field, each typed as --set types it",
    )
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--log-dir", default=None, help="default: the repository's log")
    parser.add_argument("--window", type=int, default=256, help="prompt tokens for generation")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args(argv)
    from lsp_server.completion.prompt import get_format
    from lsp_server.model.adapter_meta import read_meta
    from lsp_server.model.factory import window_tokens
    from lsp_server.model.loading import load_model

    base_cfg = PreferenceConfig(
        repo=args.repo, adapter=args.adapter, dtype=args.dtype, log_dir=args.log_dir
    )
    grid = [s.split("=", 1) for s in args.set]
    meta = read_meta(Path(args.adapter))
    assert meta is not None and meta.base_model is not None
    records = load_records(base_cfg)
    # The same split as the run: its training part is all the sweep sees.
    train_records, _ = split_by_place(records, base_cfg.heldout_feedback, base_cfg.seed)
    fit_records, val_records = split_by_place(train_records, 0.25, base_cfg.seed + 1)
    fmt = get_format(meta.prompt_format or "prefix-only")
    repo_eval = RepoEval.for_adapter(Path(args.repo), meta, Path(args.adapter), {}, base_cfg.seed)
    # Reference log-probs, once per (reference, dtype, prompt tokens): what they depend on.
    ref_caches: dict[tuple[str, str, int], dict[str, float]] = {}
    for values in itertools.product(*[v.split(",") for _, v in grid]):
        changes = dict(
            parse_setting(f"{name}={v}", PreferenceConfig)
            for (name, _), v in zip(grid, values, strict=True)
        )
        cfg = base_cfg | changes
        loaded = load_model(meta.base_model.name, device="cpu", dtype=cfg.dtype)
        build = prompt_builder(loaded.tokenizer, fmt, window_tokens("cpu"))
        fit, val = preference_data(fit_records, build), preference_data(val_records, build)
        model = trainable_adapter(loaded.model, Path(args.adapter), cfg.seed)
        scorer = Scorer(
            model, loaded.tokenizer, cfg.max_prompt_tokens, loaded.device, cfg.reference
        )
        key = (cfg.reference, cfg.dtype, cfg.max_prompt_tokens)
        fresh = key not in ref_caches
        scorer._ref = ref_caches.setdefault(key, {})
        typed = [r for r in val_records if r.typed]
        row: dict[str, Any] = {"config": changes, "fit": fit.counts(), "validation": val.counts()}
        if fresh:  # the adapter as it is, once per reference
            row["before"] = _measure(scorer, val, model, loaded.tokenizer, fmt, typed, args)
        anchor = Anchor.for_repository(repo_eval, loaded.tokenizer, fmt, cfg)  # the run's
        losses = train(model, scorer, fit, cfg, anchor)
        row["steps"], row["loss_last"] = len(losses), losses[-1]
        row["after"] = _measure(scorer, val, model, loaded.tokenizer, fmt, typed, args)
        print(json.dumps(row), flush=True)
    return 0


def _measure(scorer: Scorer, val: Any, model: Any, tok: Any, fmt: Any, typed: list, args: Any):
    import torch

    chosen = [c for c, _ in val.pairs] + [e for e in val.unpaired if e.desirable]
    with torch.no_grad():
        nll = [-float(scorer.policy(e)) / scorer.tokens(e) for e in chosen]
    return {
        "preference_accuracy": preference_accuracy(scorer, val),
        "chosen_nll": round(sum(nll) / max(len(nll), 1), 4),
        "offline_accepted": offline_acceptance(model, tok, fmt, typed, args),
        "offline_of": len(typed),
    }


if __name__ == "__main__":
    sys.exit(main())
