"""`codetailor eval`: completion quality through the same prompt path the server uses.

Registered by `lsp_server.measure.cli`; heavy imports happen when the command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.repo.hunk_order import DEFAULT_ORDER, ORDERS

BENCHMARKS = ("humaneval-line",)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="measure completion quality (exact match, edit similarity, pass@1, latency)",
        description="Measure completion quality on REPO's held-out files (the split finetune "
        "uses) or on a benchmark, through the server's own prompt path.",
        epilog="examples:\n"
        "  codetailor eval ~/src/project --samples 100 --json\n"
        "  codetailor eval ~/src/project --adapter out/adapter --compare\n"
        "  codetailor eval --benchmark humaneval-line --samples 100 --json\n"
        "  codetailor eval ~/src/project --next-edit --samples 200 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("repo", nargs="?", type=Path, metavar="REPO", help="a repository to evaluate on")
    p.add_argument("--benchmark", choices=BENCHMARKS, help="a task set instead of a repository")
    p.add_argument("--model", default=None, help="smollm2-135m (default), HF id, dir or .gguf")
    p.add_argument(
        "--adapter",
        default=None,
        help="a LoRA adapter folder made by finetune, or its registered name; none: the base "
        "model; default: REPO's registered adapter, else the general adapter shipped for the "
        "default model (as the server chooses)",
    )
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--samples", type=int, default=None, help="tasks to sample (default: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed; same seed, same tasks")
    p.add_argument("--max-tokens", type=int, default=48, help="most tokens per completion")
    p.add_argument(
        "--holdout", type=float, default=0.1, help="held-out share of files (as in finetune)"
    )
    p.add_argument("--no-context", action="store_true", help="no snippets from other files")
    p.add_argument(
        "--compare", action="store_true", help="also run the base model, without the adapter"
    )
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.add_argument("--details", action="store_true", help="also print every task's result")
    _next_edit_options(p)
    p.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    p.set_defaults(func=run)


def _next_edit_options(p: argparse.ArgumentParser) -> None:
    """`eval --next-edit` and the options that go with it."""
    p.add_argument(
        "--next-edit",
        action="store_true",
        help="score next-edit suggestions on REPO's newest commits (--holdout is then the "
        "held-out share of its commits)",
    )
    p.add_argument(
        "--order",
        choices=ORDERS,
        default=DEFAULT_ORDER,
        help="with --next-edit: the order of a commit's hunks (git records none)",
    )
    p.add_argument(
        "--time-budget-ms",
        type=int,
        default=None,
        help="with --next-edit: milliseconds per prediction (default: the server's "
        "timeBudgetMs, so answers are what an editor would get; 0: no limit)",
    )
    p.add_argument(
        "--split",
        choices=("held-out", "train"),
        default="held-out",
        help="with --next-edit: score the newest --holdout share of the commits (held-out, "
        "the default) or the earlier ones (train: to tune on a repository you will not "
        "report on)",
    )


def run(args: argparse.Namespace) -> int:
    if args.samples is not None and args.samples < 1:
        raise CodetailorError("--samples must be at least 1")
    if args.next_edit and args.benchmark is not None:
        raise CodetailorError("--next-edit takes a REPO (a git repository), not --benchmark")
    if (args.repo is None) == (args.benchmark is None):
        raise CodetailorError("give either REPO or --benchmark NAME")
    if not args.next_edit:  # next edits: only an adapter that learned them (given by name)
        _choose_adapter(args)
    if args.compare and not args.adapter:
        raise CodetailorError("--compare needs an adapter: it compares the adapter with its base")
    if args.split != "held-out" and not args.next_edit:
        raise CodetailorError("--split applies to --next-edit only")
    if args.next_edit:
        from lsp_server.measure.quality.next_edit_cli import run_next_edit

        return run_next_edit(args, _load, _model_facts)
    if args.repo is not None:
        return run_repo(args)
    return run_benchmark(args)


def run_repo(args: argparse.Namespace) -> int:

    from lsp_server.completion.retrieval import ContextIndex
    from lsp_server.measure.quality.repo_eval import sample_cursors
    from lsp_server.repo.corpus import collect
    from lsp_server.repo.files import split_files

    corpus = collect(args.repo)
    if not corpus.files:
        raise CodetailorError(f"{args.repo} holds no source files to evaluate on")
    _, held = split_files([f.path for f in corpus.files], args.holdout)
    held_set = set(held)
    samples = sample_cursors(
        [(f.path, f.text) for f in corpus.files if f.path in held_set],
        args.samples or 100,
        args.seed,
    )
    if not samples:
        raise CodetailorError(f"the held-out files of {args.repo} have no lines to complete")
    index = None
    if not args.no_context:
        # The whole repository, as the server indexes a workspace; a sample's own
        # file is never its own context (the index skips the current path).
        index = ContextIndex()
        for f in corpus.files:
            index.update_document(f.path, f.text)

    runs = [("adapter" if args.adapter else "model", args.adapter)]
    if args.compare:
        runs.insert(0, ("base", None))
    results: dict[str, Any] = {}
    for label, adapter in runs:
        results[label] = _score_one(args, label, adapter, samples, index, len(held))
    if args.compare:
        base, tuned = results["base"], results["adapter"]
        report = tuned | {
            "base": {k: base[k] for k in ("exact_match", "edit_similarity", "latency_ms_p50")},
            "delta": {k: round(tuned[k] - base[k], 4) for k in ("exact_match", "edit_similarity")},
        }
    else:
        report = next(iter(results.values()))
    _report(report, None, args.json)
    return 0


def _score_one(
    args: argparse.Namespace,
    label: str,
    adapter: str | None,
    samples: list[Any],
    index: Any,
    held_out_files: int,
) -> dict[str, Any]:
    """Load one model (base or adapter), complete every sample, and summarise."""
    from tqdm import tqdm

    from lsp_server.measure.quality.repo_eval import score

    loaded, completer = _load(args, adapter)

    def complete(sample, completer=completer) -> tuple[str, float]:
        context = index.query(sample.text, sample.offset, path=sample.path) if index else []
        started = time.monotonic()
        result = completer.complete(
            sample.text,
            sample.offset,
            max_tokens=args.max_tokens,
            path=sample.path,
            context=context,
        )
        return result.text, (time.monotonic() - started) * 1000

    with tqdm(total=len(samples), desc=f"eval {label}", unit="sample", file=sys.stderr) as bar:
        summary, scored = score(samples, complete, progress=bar.update)
    summary |= _model_facts(loaded, completer) | {
        "adapter_reason": _reason(args, adapter, loaded),
        "context": index is not None,
        "seed": args.seed,
        "repo": str(args.repo),
        "held_out_files": held_out_files,
    }
    if args.details:
        summary["details"] = [
            {
                "path": r.sample.path,
                "kind": r.sample.kind,
                "expected": r.sample.expected,
                "prediction": r.prediction,
                "exact": r.exact,
            }
            for r in scored
        ]
    return summary


def run_benchmark(args: argparse.Namespace) -> int:
    """The benchmark with the model `args` name (and, with `--compare`, the base model
    first, on the same tasks, paired task by task)."""
    from lsp_server.measure.quality.humaneval_eval import paired

    runs = [("adapter" if args.adapter else "model", args.adapter)]
    if args.compare:
        runs.insert(0, ("base", None))
    scored = {label: _benchmark_one(args, label, adapter) for label, adapter in runs}
    if not args.compare:
        summary, results = scored[runs[0][0]]
        _report(summary, [r.__dict__ for r in results] if args.details else None, args.json)
        return 0
    (base, base_results), (tuned, tuned_results) = scored["base"], scored["adapter"]
    report = {"base": base, "adapter": tuned, "paired": paired(base_results, tuned_results)}
    details = None
    if args.details:
        details = [
            {
                "task_id": b.task_id,
                "base": b.prediction,
                "adapter": t.prediction,
                "target": b.target,
                "base_exact": b.exact,
                "adapter_exact": t.exact,
            }
            for b, t in zip(base_results, tuned_results, strict=True)
        ]
    if args.json:
        print(json.dumps(report | ({"details": details} if details else {})))
        return 0
    from lsp_server.measure.tables import print_summary

    for label in ("base", "adapter"):
        print(f"--- {label}")
        print_summary(report[label])
    print("--- paired")
    print_summary(report["paired"])
    return 0


def _benchmark_one(args: argparse.Namespace, label: str, adapter: str | None) -> tuple[Any, Any]:
    """One model's run of the benchmark: its summary and its task results."""
    from tqdm import tqdm

    from lsp_server.measure.quality.humaneval_eval import evaluate_humaneval_line

    loaded, completer = _load(args, adapter)

    def complete(text: str, offset: int) -> tuple[str, float]:
        started = time.monotonic()
        result = completer.complete(text, offset, max_tokens=args.max_tokens, mode="line")
        return result.text, (time.monotonic() - started) * 1000

    with tqdm(
        total=args.samples or 1033, desc=f"humaneval-line {label}", unit="task", file=sys.stderr
    ) as bar:
        summary, results = evaluate_humaneval_line(
            complete, samples=args.samples, seed=args.seed, progress=bar.update
        )
    summary |= _model_facts(loaded, completer)
    summary["adapter_reason"] = _reason(args, adapter, loaded)
    return summary, results


def _choose_adapter(args: argparse.Namespace) -> None:
    """Resolve `--adapter` as the server would for REPO (`lsp_server.cli.adapter_choice`):
    `args.adapter` becomes the folder (None: the base model), `args.adapter_reason` why."""
    from lsp_server.commands.adapter import adapter_choice

    choice = adapter_choice(args.adapter, args.model, "local", args.repo)
    args.adapter, args.adapter_reason = choice.adapter, choice.reason


def _load(args: argparse.Namespace, adapter: str | None) -> tuple[Any, Any]:
    """The model `args` name with `adapter` (a folder or registered name; None: the base
    model), through the model factory: its facts and its completer."""
    from lsp_server.model.factory import load_completers
    from lsp_server.model.registry import adapter_ref
    from lsp_server.spec import ModelSpec

    spec = ModelSpec(model=args.model, device=args.device, dtype=args.dtype)
    loaded = load_completers(spec, [adapter_ref(adapter)])
    return loaded.model, loaded.completer


def _reason(args: argparse.Namespace, adapter: str | None, loaded: Any) -> str:
    """Why this run used its adapter (or none): the choice, or why the adapter it chose
    did not load (the shipped one, made for other weights: the base model answered)."""
    if adapter is None:
        return "compared: base model" if args.adapter else str(args.adapter_reason)
    if loaded.adapter is None:
        return "the adapter did not fit these weights (see the warning): base model"
    return str(getattr(args, "adapter_reason", "given"))


def _model_facts(loaded: Any, completer: Any) -> dict[str, Any]:
    """What a report says about the model that answered."""
    return {
        "model": loaded.name,
        "adapter": str(loaded.adapter.path) if loaded.adapter else None,
        "prompt_format": completer.format.name,
        "device": loaded.device,
        "dtype": loaded.dtype,
    }


def _report(summary: dict[str, Any], details: list[dict[str, Any]] | None, as_json: bool) -> None:
    if as_json:
        print(json.dumps(summary | ({"details": details} if details else {})))
        return
    from lsp_server.measure.tables import print_summary

    print_summary(summary)
