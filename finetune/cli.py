"""`codetailor finetune`: the command, registered through the `codetailor.commands` entry point.

Also runnable on its own (`python -m finetune.cli REPO --out DIR`), which is how
`accelerate launch -m finetune.cli ...` runs it on several processes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finetune.config import (
    FinetuneConfig,
    PreferenceConfig,
    keys_help,
    load_yaml,
    settings_over,
)
from finetune.console import say
from finetune.durable import release
from lsp_server.errors import CodetailorError

EXAMPLES = """\
examples:
  codetailor finetune . --out adapters/myrepo                 # defaults: SmolLM2-135M, 1 epoch
  codetailor finetune ~/src/lib --out lib-lora --max-steps 40 --json
  codetailor finetune . --out qwen-lora --config qwen2.5-coder-1.5b.yaml
  accelerate launch --multi_gpu --num_processes 2 -m finetune.cli . --out lora   # data parallel
  codetailor complete src/app.py:42:17 --adapter adapters/myrepo
  codetailor finetune . --out adapters/myrepo --feedback    # learn from what you kept

  codetailor finetune . --out lora --set lora_dropout=0.1 --set extensions=.py,.pyi
  codetailor finetune . --time-budget 10                      # update the registered adapter
  codetailor finetune . --out lora --from-scratch --time-budget 0     # all epochs, no limit

A run fits its time budget (25 minutes on a CPU unless set; none on a GPU): it
times its first steps and plans the rest, the learning rate ending at its floor
at the planned end. Run again on an --out that holds this repository's adapter
(or with no --out: the one registered for the repository), it trains only on
what is new since that adapter's commit, plus a replay share of the old data,
starting from that adapter; with nothing new it says so and writes nothing.
An interrupted run (Ctrl-C, kill) continues from its last checkpoint with the
same command and --resume. Settings come from the defaults, then --config, then
the options above (--set reaches every key below; finetune/configs/debug.yaml
sets every key too).
"""

# Command-line option -> config field, for the options of the command-line contract.
OPTIONS: dict[str, tuple[str, type]] = {
    "--model": ("model", str),
    "--max-steps": ("max_steps", int),
    "--epochs": ("epochs", float),
    "--seq-len": ("seq_len", int),
    "--lora-r": ("lora_r", int),
    "--holdout": ("holdout", float),
    "--device": ("device", str),
    "--dtype": ("dtype", str),
    "--seed": ("seed", int),
    "--time-budget": ("time_budget_minutes", float),
}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `finetune` to the `codetailor` command line (the entry point's function)."""
    parser = subparsers.add_parser(
        "finetune",
        help="train a LoRA adapter on a repository",
        description="Fine-tune a LoRA adapter for the completion model on a repository's code.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=cmd_finetune)
    return parser


FEEDBACK_KEYS = (
    "with --feedback, these keys instead (--out is the adapter to tune,\n"
    "--holdout sets heldout_feedback, --seq-len max_prompt_tokens):"
)


def epilog() -> str:
    """The help's tail: examples, then every config key with its type, default and help,
    for training and for --feedback."""
    return f"{EXAMPLES}\n{keys_help()}\n\n{keys_help(PreferenceConfig, FEEDBACK_KEYS)}\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("repo", metavar="REPO", help=FinetuneConfig.help("repo"))
    parser.add_argument(
        "--out",
        metavar="DIR",
        help=FinetuneConfig.help("out") + "; default: the adapter registered for REPO",
    )
    for flag, (name, kind) in OPTIONS.items():
        metavar = "MINUTES" if flag == "--time-budget" else None
        text = FinetuneConfig.help(name)
        parser.add_argument(flag, dest=name, type=kind, default=None, metavar=metavar, help=text)
    fresh = parser.add_mutually_exclusive_group()
    fresh.add_argument(
        "--incremental",
        dest="incremental",
        action="store_const",
        const="on",
        help="update the adapter at --out with what is new (the default where it can: "
        "this repository's adapter, same model and LoRA settings); refuse where it cannot",
    )
    fresh.add_argument(
        "--from-scratch",
        dest="incremental",
        action="store_const",
        const="off",
        help="train a new adapter on everything, even where --out holds one to update",
    )
    parser.add_argument("--config", metavar="YAML", help="a config file (see finetune/configs/)")
    parser.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="settings",
        help="set any config key (listed below); repeatable, applied after --config",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        default=None,
        help=FinetuneConfig.help("trust_remote_code"),
    )
    parser.add_argument(
        "--feedback",
        action="store_true",
        help="tune the adapter at --out on the repository's feedback log (kept over rejected "
        "suggestions; DPO/KTO) and keep it only if it does not get worse",
    )
    parser.add_argument(
        "--serve-new",
        action="store_true",
        help="make the new adapter the one the server uses for the repository even when the "
        "one serving now scored a lower held-out loss (by default the better one keeps serving)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")


def config_from_args(args: argparse.Namespace) -> FinetuneConfig:
    """Defaults, then the --config file, then the options given on the command line.

    A key given both by its own option and by --set is refused rather than
    resolved by an order the user would have to look up.
    """
    values: dict[str, Any] = load_yaml(args.config) if args.config else {}
    given: dict[str, Any] = {"repo": args.repo}
    if args.out is not None:  # else the --config file's or --set's out (see out_given)
        given["out"] = args.out
    for name, _ in OPTIONS.values():
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if args.trust_remote_code:
        given["trust_remote_code"] = True
    if getattr(args, "incremental", None):
        given["incremental"] = args.incremental
    values |= settings_over(FinetuneConfig, args.settings, given)
    values |= given
    if values.get("holdout") == 0:  # nothing held out: nothing to stop early on or to match
        values.setdefault("patience", 0)
        values.setdefault("match_samples", 0)
    return FinetuneConfig.from_dict(values).validate()


def out_given(args: argparse.Namespace) -> bool:
    """Whether the command names the adapter folder: --out, `--set out=...` or the --config
    file's `out`. Only where none does is the repository's registered adapter updated."""
    if args.out is not None:
        return True
    if any(text.split("=", 1)[0].strip() == "out" for text in args.settings or ()):
        return True
    return bool(args.config and load_yaml(args.config).get("out"))


def cmd_finetune(args: argparse.Namespace) -> int:
    if getattr(args, "feedback", False):
        from finetune.preference.command import cmd_preference

        if args.out is None:  # the adapter to tune: --out or the registered one
            args.out = registered_out(args.repo, args.model)
        return cmd_preference(args)
    if not out_given(args):
        args.out = registered_out(args.repo, args.model)
    from finetune.incremental import NothingNew
    from finetune.train import Interrupted, run

    config = config_from_args(args)
    try:
        summary = run(config, resume=args.resume, progress=not args.no_progress)
    except Interrupted as exc:
        say(f"codetailor: {exc}")
        return 130
    except NothingNew as exc:
        say(f"codetailor finetune: {exc}")
        if args.json:
            print(json.dumps({"adapter": config.out, "nothing_new": True}), flush=True)
        return 0
    finally:
        release(Path(config.out).expanduser())  # no OUT.lock left behind
    if summary is None:
        return 0
    register_finished(config.repo, config.out, serve_new=getattr(args, "serve_new", False))
    if args.json:
        print(json.dumps(summary), flush=True)
    else:
        print(format_summary(summary))
    return 0


def registered_out(repo: str, model: str | None) -> str:
    """The folder of the adapter registered for `repo` (for `model`), which a run with no
    --out updates; one line where there is none."""
    from lsp_server.model import registry

    match = registry.lookup_match(repo, model or FinetuneConfig.model)
    if match is None or match.refused:
        raise CodetailorError(
            f"--out is required: no adapter is registered for {repo} yet"
            + (f" ({match.refused})" if match and match.refused else "")
        )
    return match.entry.path


def register_finished(repo: str, out: str, *, serve_new: bool = False) -> None:
    """Record the new adapter under its repository (path and remote URL), so the server
    finds it for that repository, and say which adapter serves it now (the better one on
    held-out code, see finetune/serving.py); a registry that cannot be written only warns."""
    from finetune import serving

    try:
        line = serving.register_finished(repo, out, serve_new=serve_new)
    except (CodetailorError, OSError) as exc:
        say(f"codetailor: warning: adapter not registered: {exc}")
        return
    say(f"codetailor: {line}")


def format_summary(s: dict[str, Any]) -> str:
    def num(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else "-"

    return "\n".join(
        [
            f"adapter: {s['adapter']} ({s['base_model']}, {s['prompt_format']} format; "
            f"learned: {', '.join(s.get('tasks', ['completion']))})",
            *([f"started from: {s['started_from']}"] if s.get("started_from") else []),
            _steps_line(s, num),
            f"held-out loss: {num(s['heldout_loss_before'], '.4f')} -> "
            f"{num(s['heldout_loss_after'], '.4f')}",
            f"next-line exact match ({s['match_samples']} lines): "
            f"{num(s['next_line_exact_match_before'], '.3f')} -> "
            f"{num(s['next_line_exact_match_after'], '.3f')}",
        ]
    )


def _steps_line(s: dict[str, Any], num: Any) -> str:
    """Steps run and planned, why the run stopped, its speed and wall time."""
    limit = s.get("step_limit", s["total_steps"])
    line = f"steps: {s['steps']} of {s['total_steps']} planned"
    if limit != s["total_steps"]:
        line += f" ({limit} for the epochs or max_steps; the time budget allowed fewer)"
    reason = s.get("stop_reason") or ("early_stop" if s.get("stopped_early") else None)
    if reason:
        line += f", stopped by: {reason.replace('_', ' ')}"
    line += f", {num(s['tokens_per_second'], '.0f')} tokens/s"
    if s.get("wall_seconds") is not None:
        line += f", {num(s['wall_seconds'], '.0f')} s in all"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m finetune.cli ...`: the same command without the `codetailor` front."""
    from lsp_server.cli import run_command, setup_logging

    parser = argparse.ArgumentParser(
        prog="codetailor finetune",
        description="Fine-tune a LoRA adapter for the completion model on a repository's code.",
        epilog=epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    return run_command(cmd_finetune, args)


if __name__ == "__main__":
    sys.exit(main())
