"""`codetailor finetune REPO --out DIR --feedback`: the command's config and its report.

The command shares `finetune`'s parser (finetune/cli.py); with `--feedback` its
options set PreferenceConfig's fields instead: --out is the adapter to tune,
--holdout the share of the log's places held out for the gate, --seq-len the
prompt tokens kept per example, and `--set KEY=VALUE` reaches every field
(finetune/config.py parses it, as for training).

Before tuning, it learns the repository's show-or-stay-quiet filter from the same
log (`lsp_server.quiet.learn`, as `codetailor feedback learn` does): what the log
teaches best is when a suggestion is worth showing (issue 27). The filter is
stored beside the log whatever the gate decides about the adapter.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from finetune.config import PreferenceConfig, settings_over
from finetune.preference.records import feedback_log
from finetune.preference.run import run_preference
from lsp_server.errors import CodetailorError

# Command-line option (its argparse dest) -> PreferenceConfig field, with --feedback.
OPTIONS: dict[str, str] = {
    "device": "device",
    "dtype": "dtype",
    "seed": "seed",
    "epochs": "epochs",
    "max_steps": "max_steps",
    "holdout": "heldout_feedback",
    "seq_len": "max_prompt_tokens",
}


def config_from_args(args: argparse.Namespace) -> PreferenceConfig:
    """The defaults, then `--set`, then the options given on the command line."""
    given: dict[str, Any] = {"repo": args.repo, "adapter": args.out}
    for dest, name in OPTIONS.items():
        if getattr(args, dest, None) is not None:
            given[name] = getattr(args, dest)
    texts = getattr(args, "settings", None) or []
    values = settings_over(PreferenceConfig, texts, given)
    return PreferenceConfig.from_dict(values | given).validate()


def cmd_preference(args: argparse.Namespace) -> int:
    """The `--feedback` branch of `codetailor finetune`."""
    cfg = config_from_args(args)
    quiet = learn_quiet(cfg)
    summary = run_preference(cfg, progress=not args.no_progress) | {"quiet": quiet}
    if args.json:
        print(json.dumps(summary), flush=True)
        return 0
    print(format_summary(summary))
    return 0


def learn_quiet(cfg: PreferenceConfig) -> dict[str, Any]:
    """The repository's show-or-stay-quiet filter learned from the tuning's log and stored
    beside it: the learner's report, or {"error": why} when the log cannot teach one."""
    from lsp_server.quiet.learn import learn_for_repo

    folder = Path(cfg.log_dir) if cfg.log_dir else feedback_log(cfg.repo)
    try:
        return learn_for_repo(Path(cfg.repo), folder, source=cfg.source or None, seed=cfg.seed)
    except CodetailorError as exc:
        return {"error": str(exc)}


def format_summary(s: dict[str, Any]) -> str:
    """The plain report: the data, the steps, each gate figure before -> after, the verdict."""

    def num(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else "-"

    b, a = s["before"], s["after"]
    lines = [
        f"feedback: {s['train']['pairs']} pairs, {s['train']['unpaired']} unpaired "
        f"({s['train']['desirable']} kept, {s['train']['undesirable']} rejected); "
        f"held out: {s['heldout']['pairs']} pairs, {s['heldout']['unpaired']} unpaired",
        f"steps: {s['steps']}, loss {num(s['loss_first'])} -> {num(s['loss_last'])}",
    ]
    for key in ("heldout_loss", "next_line_exact_match", "preference_accuracy"):
        lines.append(f"{key.replace('_', ' ')}: {num(b.get(key))} -> {num(a.get(key))}")
    if s["kept"]:
        lines.append(f"kept: the tuned adapter replaced {s['adapter']}")
    else:
        lines.append(f"not kept ({'; '.join(s['reasons'])}); {s['adapter']} is unchanged")
    quiet = s.get("quiet") or {}
    for what, report in (("", quiet), ("next edits' ", quiet.get("next_edit") or {})):
        if "error" in report:
            lines.append(f"{what}show-or-stay-quiet filter not learned: {report['error']}")
        elif "learner" in report:
            done = f"wrote {report['path']}" if report.get("stored") else "not kept"
            lines.append(f"{what}show-or-stay-quiet filter: {report['learner']}, {done}")
    return "\n".join(lines)
