"""`codetailor eval REPO --next-edit`: next-edit quality on the repository's newest commits.

The examples come from REPO's own history (`lsp_server.repo.history`, the
miner `finetune` shares): the newest `--holdout` share of the commits that
teach edits is held out, and no held-out example repeats a change an earlier
commit made (`--split train` scores the earlier commits instead, for tuning on
a repository that is not reported on). Each example's request goes to the same
next-edit predictor the server uses, its show-or-not gate included; the figures
are `next_edit_eval.with_gates`'s (as served, ungated, and a sweep of gates over
the same answers). Progress goes to
stderr, results to stdout (one JSON object with `--json`, a table without);
`--compare` scores the base model and the adapter on the same examples and
prints `{"base": {...}, "adapter": {...}}`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from lsp_server.completion.next_edit import NextEditPredictorLike
from lsp_server.errors import CodetailorError
from lsp_server.repo.edit_examples import WINDOW_LINES
from lsp_server.session.settings import Settings

Load = Callable[[argparse.Namespace, str | None], tuple[Any, Any]]


def run_next_edit(args: argparse.Namespace, load: Load, facts_of: Callable[..., dict]) -> int:
    """Mine, sample, predict, report; `load` gives (model facts, completer) for an adapter
    (`eval`'s model factory call) and `facts_of` what a report says about them."""
    from lsp_server.measure.quality.next_edit_eval import sample
    from lsp_server.repo.history import mine_split

    if args.benchmark is not None or args.repo is None:
        raise CodetailorError("--next-edit takes a REPO (a git repository), not --benchmark")
    if not args.repo.is_dir():
        raise CodetailorError(f"{args.repo} is not a folder")
    history, earlier, held = mine_split(args.repo, args.holdout)
    split = getattr(args, "split", "held-out")
    commits = held if split == "held-out" else earlier
    runs = [("base", None), ("adapter", args.adapter)] if args.compare else []
    runs = runs or [("adapter" if args.adapter else "model", args.adapter)]
    # The first model is loaded before mining: the windows are the size its server uses.
    first = load_predictor(args, runs[0][1], load, facts_of)
    window_lines = getattr(first[0], "window_lines", WINDOW_LINES)
    examples = _examples(args, history, commits, window_lines, held_out=split == "held-out")
    chosen = sample(examples, args.samples, args.seed)
    budget_ms = Settings().time_budget_ms if args.time_budget_ms is None else args.time_budget_ms
    facts = {
        "repo": str(args.repo),
        "seed": args.seed,
        "order": args.order,
        "holdout": args.holdout,
        "split": split,
        "window_lines": window_lines,
        "time_budget_ms": budget_ms or None,
        "commits": {
            "first_parent": len(history.commits),
            "kept": len(history.kept),
            "dropped": history.dropped(),
            "held_out": len(held),
        },
        "mined_examples": len(examples),
    }
    results = {}
    for i, (label, adapter) in enumerate(runs):
        loaded = first if i == 0 else load_predictor(args, adapter, load, facts_of)
        results[label] = _score(label, loaded, chosen, budget_ms / 1000 or None, args.details)
        results[label] |= facts
        if results[label]["examples"] < len(chosen):  # cut short with Ctrl-C
            results[label]["interrupted"] = True
            print(f"interrupted after {results[label]['examples']} examples", file=sys.stderr)
            break
    report = results if args.compare else results[runs[0][0]]
    if args.json:
        print(json.dumps(report))
    else:
        print(render_table(results, facts))
    return 0


def _examples(
    args: argparse.Namespace, history: Any, commits: list[Any], window_lines: int, held_out: bool
) -> list:
    from tqdm import tqdm

    with tqdm(total=len(commits), desc="mine history", unit="commit", file=sys.stderr) as bar:
        examples = history.examples(
            commits,
            held_out=held_out,
            order=args.order,
            window_lines=window_lines,
            progress=bar.update,
        )
    if not examples:
        which = "newest" if held_out else "earlier"
        raise CodetailorError(
            f"the {len(commits)} {which} commits of {args.repo} hold no next-edit examples "
            "(try another --holdout)"
        )
    return examples


def load_predictor(
    args: argparse.Namespace, adapter: str | None, load: Load, facts_of: Callable[..., dict]
) -> tuple[NextEditPredictorLike, dict[str, Any]]:
    """The server's next-edit predictor for `--model` (with `adapter`), and what a report
    says about it."""
    from lsp_server.model.next_edit import next_edit_predictor

    loaded, completer = load(args, adapter)
    return next_edit_predictor(completer), facts_of(loaded, completer)


def _score(
    label: str,
    loaded: tuple[NextEditPredictorLike, dict[str, Any]],
    examples: list[Any],
    time_budget: float | None,
    details: bool,
) -> dict[str, Any]:
    from tqdm import tqdm

    from lsp_server.completion.next_edit_gate import OPEN_GATE
    from lsp_server.measure.quality.next_edit_eval import evaluate, with_gates

    predictor, model_facts = loaded
    with tqdm(total=len(examples), desc=f"next edit {label}", unit="ex", file=sys.stderr) as bar:
        scored = evaluate(examples, predictor, progress=bar.update, time_budget=time_budget)
    summary = with_gates(scored, getattr(predictor, "gate", OPEN_GATE)) | model_facts
    if details:
        summary["details"] = [
            {
                "commit": s.example.commit,
                "path": s.example.request.path,
                "category": s.example.category,
                "current": s.example.request.window.current,
                "expected": s.example.expected,
                "written": s.written,
                "shown": s.shown,
                "exact": s.exact,
                "stop_reason": s.answer.stop_reason,
                "confidence": s.answer.confidence.to_json() if s.answer.confidence else None,
                "exact_ungated": s.regated(OPEN_GATE).exact,
                "latency_ms": round(s.latency_ms, 1),
            }
            for s in scored
        ]
    return summary


_ROWS = (
    ("exact match (edit due)", "exact_match", "exact_match_ci95", "edit_due"),
    ("no-edit accuracy", "no_edit_accuracy", "no_edit_accuracy_ci95", "no_edit_windows"),
    ("shown precision", "shown_precision", "shown_precision_ci95", "shown"),
)


def render_table(results: dict[str, dict[str, Any]], facts: dict[str, Any]) -> str:
    """The figures of one or more runs as a table, one column per run."""
    labels = list(results)
    first = results[labels[0]]
    lines = [
        f"next edits on {facts['repo']}: {first['examples']} examples "
        f"({first['edit_due']} edit due, {first['no_edit_windows']} no-edit windows) "
        f"from the {facts['commits']['held_out']} newest of {facts['commits']['kept']} commits",
        f"{'':<26}" + "".join(f"{label:>26}" for label in labels),
    ]

    def row(name: str, cells: list[str]) -> None:
        lines.append(f"{name:<26}" + "".join(f"{c:>26}" for c in cells))

    for name, key, ci, count in _ROWS:
        row(name, [_cell(r[key], r[ci], r[count]) for r in results.values()])
    for category in ("below", "above", "at"):
        cells = [r["by_category"][category] for r in results.values()]
        cell = [_cell(c["exact_match"], c["exact_match_ci95"], c["examples"]) for c in cells]
        row(f"  edit {category} the cursor" if category != "at" else "  edit at the cursor", cell)
    row(
        "latency p50 / p95 ms", [f"{r['p50_ms']:.0f} / {r['p95_ms']:.0f}" for r in results.values()]
    )
    row("tokens per forward", [str(r["tokens_per_forward"]) for r in results.values()])
    return "\n".join(lines)


def _cell(value: float | None, ci: list[float] | None, n: int) -> str:
    if value is None or ci is None:
        return f"- (n={n})"
    return f"{value:.3f} [{ci[0]:.2f}, {ci[1]:.2f}] n={n}"
