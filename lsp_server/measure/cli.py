"""`codetailor bench ...` and `codetailor eval`: the entry points of all measurement.

Latency (`bench latency`: typing replay through the real server against
baselines), engine speed (`bench engine`), server overhead (`bench overhead`),
the remote engine's overhead (`bench remote`) and completion quality (`eval`:
a repository's held-out files, HumanEval line infilling). Heavy imports happen when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.repo.files import read_source


def register(sub: argparse._SubParsersAction) -> None:
    from lsp_server.measure.quality.cli import register as register_eval

    add_bench(sub)
    register_eval(sub)


def add_bench(sub: argparse._SubParsersAction) -> None:
    from lsp_server.measure.gpu_bench import add_gpu  # light: no torch, no pygls

    bench = sub.add_parser(
        "bench",
        help="benchmarks: latency as a user typing feels it",
        description="Benchmarks, each a ratio measured in one run: latency as a user typing "
        "feels it (latency), the engine's speed (engine), what the server adds (overhead), a "
        "remote engine (remote), adapter swaps (swap), a simulated user (simulate) and a GPU's "
        "figures in one command (gpu).",
    )
    kinds = bench.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    add_latency(kinds)
    add_simulate(kinds)
    add_gpu(kinds)
    for name, help_text in (
        ("engine", "engine speed: load, prefill and decode rates, warm vs cold request"),
        ("overhead", "what the LSP server adds to a completion over the engine's own time"),
        ("remote", "the remote engine against the local one and bare HTTP, on the same prompts"),
        ("swap", "adapter swap time (reload against in place), merged against unmerged speed"),
        ("memory", "the server's resident memory (RSS) after one completion, and what holds it"),
        ("load", "load to ready, stage by stage, cold and warm, each in a fresh process"),
        ("int4", "what the int4 model's bf16 copies buy in prefill and decode time"),
        (
            "nextedit",
            "next-edit latency beside a completion's, and the rewrite's tokens per forward",
        ),
    ):
        p = kinds.add_parser(name, help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER, help="its own options (see --help)")
        p.set_defaults(func=cmd_bench_script, script=name)


def _add_cold_args(latency: argparse.ArgumentParser, pause_ms: float) -> None:
    """`bench latency`'s cold-open scenario: how many places, the pause, asked at once."""
    latency.add_argument(
        "--cold-places", type=int, default=5, help="cold-open places per file (0: skip)"
    )
    latency.add_argument(
        "--cold-pause-ms",
        type=float,
        default=pause_ms,
        help="cold open: from codetailor/cursor to the first keystroke and its request "
        f"(default {pause_ms}: a person placing the cursor, then starting to type)",
    )
    latency.add_argument(
        "--cold-at-once",
        action="store_true",
        help="cold open: also ask at once after didOpen, without codetailor/cursor (ours-at-once)",
    )


def _add_client_args(latency: argparse.ArgumentParser) -> None:
    """`bench latency`'s typist and editor: the pause between words, a bare client."""
    latency.add_argument(
        "--pause-ms",
        type=float,
        default=0.0,
        help="the typing replay's pause between an answer and the next word (a typist's "
        "time per word; default 0: at once, which leaves no time for background work)",
    )
    latency.add_argument(
        "--bare-client",
        action="store_true",
        help="ask as an editor without a Codetailor plugin: an empty completion waits for a "
        "next edit drawn inline; by default as the plugins ask (drawsNextEdits)",
    )


def add_latency(kinds: argparse._SubParsersAction) -> None:
    """`codetailor bench latency` and its options."""
    from lsp_server.measure.latency import COLD_PAUSE_MS  # light: no torch, no pygls

    latency = kinds.add_parser(
        "latency",
        help="replay typing FILEs through the server and a naive baseline",
        description="Replay a user typing each FILE word by word, asking for a completion at "
        "each pause, through the real server (ours), through transformers generate on the "
        "full prompt (naive) and, where llama-cpp-python is installed, through llama.cpp.",
        epilog="example: codetailor bench latency src/app.py --json --out bench-out",
    )
    latency.add_argument("files", nargs="+", type=Path, metavar="FILE")
    latency.add_argument("--model", default=None, help="smollm2-135m (default), HF id, dir, .gguf")
    latency.add_argument("--adapter", default=None, help="a LoRA adapter folder")
    latency.add_argument(
        "--steps", type=int, default=40, help="words typed per file (0: cold open only)"
    )
    latency.add_argument("--max-tokens", type=int, default=16, help="most tokens per completion")
    latency.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    latency.add_argument(
        "--engine",
        default="local",
        metavar="local|openai:URL",
        help="run `ours` on this engine; a remote one is compared with the local engine",
    )
    latency.add_argument(
        "--no-local", action="store_true", help="with a remote --engine, skip the local run"
    )
    _add_cold_args(latency, COLD_PAUSE_MS)
    latency.add_argument(
        "--baseline-tree",
        type=Path,
        help="another checkout of codetailor: its server runs too, as 'before', taking turns",
    )
    latency.add_argument(
        "--also-dtype",
        action="append",
        default=[],
        metavar="DTYPE",
        help="also run our server with this --dtype, as ours-DTYPE (repeatable; the servers "
        "take turns, and each one's background work runs during the others' requests)",
    )
    latency.add_argument(
        "--dtype", default=None, help="our server's and the naive baseline's --dtype (default auto)"
    )
    _add_client_args(latency)
    latency.add_argument("--out", type=Path, help="write latency.json, .md and .png here")
    latency.add_argument("--json", action="store_true", help="print the report as JSON")
    latency.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    latency.set_defaults(func=cmd_bench_latency)


def _add_offline_args(simulate: argparse.ArgumentParser) -> None:
    """`bench simulate`'s offline mode: no server, every place, paired with another side."""
    simulate.add_argument(
        "--offline",
        action="store_true",
        help="no server: complete greedily at every place the user may ask (after each word "
        "of the --words typed per file) and count what the user would take there",
    )
    simulate.add_argument(
        "--against",
        default=None,
        metavar="ADAPTER",
        help="with --offline: also this adapter (or 'base') at the same places, compared "
        "place by place with --adapter (a sign test)",
    )
    simulate.add_argument(
        "--quietness",
        type=int,
        default=None,
        metavar="PERCENT",
        help="with --offline: the show-or-stay-quiet threshold the arms apply (default: the "
        "setting's, 25)",
    )
    simulate.add_argument(
        "--next-edit",
        action="store_true",
        help="next edits instead of completions: the places are the examples `eval "
        "--next-edit` mines from REPO's history (--split train: the commits before the cut; "
        "heldout: the newest --holdout share); a shown edit is accepted when it writes the "
        "window the commit wrote. With --record the log, with --offline the arms",
    )
    simulate.add_argument(
        "--samples",
        type=int,
        default=None,
        metavar="N",
        help="with --next-edit: draw N of the mined places (default: all)",
    )
    simulate.add_argument(
        "--seed", type=int, default=0, help="with --next-edit: the draw's seed (default 0)"
    )
    simulate.add_argument(
        "--takes",
        action="store_true",
        help="with --offline --json: also list the places and what each side took at each, "
        "to pair runs made apart (offline_user.paired)",
    )


def add_simulate(kinds: argparse._SubParsersAction) -> None:
    """`codetailor bench simulate` and its options."""
    from lsp_server.measure.simulated_user import UserSetup  # light: no torch, no pygls

    simulate = kinds.add_parser(
        "simulate",
        help="a simulated user types a repository's files and takes the suggestions that match",
        description="Type the held-out (or training) files of REPO word by word through the "
        "real server; accept a suggestion when it matches what the file says next (whole "
        "words, at least --min-chars), else ignore it. Prints the acceptance rate.",
        epilog="example: codetailor bench simulate ~/src/lib --adapter lora --suggestions 40",
    )
    simulate.add_argument("repo", type=Path, metavar="REPO")
    simulate.add_argument("--split", choices=("heldout", "train"), default="heldout")
    simulate.add_argument(
        "--only",
        action="append",
        default=None,
        metavar="PATH",
        help="type only this file of the split (repository-relative; repeat for more)",
    )
    simulate.add_argument("--model", default=None, help="smollm2-135m (default), HF id, dir")
    simulate.add_argument("--adapter", default=None, help="a LoRA adapter folder")
    simulate.add_argument("--suggestions", type=int, default=40, help="stop after N shown")
    simulate.add_argument("--words", type=int, default=80, help="words typed per file, at most")
    simulate.add_argument(
        "--start",
        type=float,
        default=UserSetup.start,
        metavar="FRACTION",
        help="where in each file typing starts: on the line after the one this far into it "
        "(0 up to, not including, 1); default %(default)s",
    )
    simulate.add_argument("--min-chars", type=int, default=4, help="shortest part accepted")
    simulate.add_argument("--max-tokens", type=int, default=24, help="most tokens per completion")
    simulate.add_argument("--holdout", type=float, default=0.1, help="as finetune's --holdout")
    simulate.add_argument("--dtype", default=None, help="the server's --dtype (e.g. float32)")
    simulate.add_argument(
        "--record",
        action="store_true",
        help="let the server write the feedback events to REPO's log, as it does for an "
        "editor, labelled source=simulated (without it: feedback off)",
    )
    _add_offline_args(simulate)
    simulate.add_argument("--json", action="store_true", help="print one JSON object")
    simulate.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    simulate.set_defaults(func=cmd_bench_simulate)


def cmd_bench_simulate(args: argparse.Namespace) -> int:
    if not args.repo.is_dir():
        raise CodetailorError(f"{args.repo} is not a folder; give a repository")
    if args.suggestions < 1 or args.words < 1:
        raise CodetailorError("--suggestions and --words must be at least 1")
    if not 0 <= args.start < 1:
        raise CodetailorError(f"--start {args.start}: give a fraction of the file, 0 up to 1")
    from lsp_server.measure.simulated_user import UserSetup, run_simulation
    from lsp_server.model.loading import DEFAULT_MODEL

    setup = UserSetup(
        words_per_file=args.words,
        max_suggestions=args.suggestions,
        start=args.start,
        min_chars=args.min_chars,
        record=args.record,
        dtype=args.dtype,
    )
    if args.next_edit:
        return _simulate_next_edits(args, args.model or DEFAULT_MODEL)
    if args.offline:
        return _simulate_offline(args, setup, args.model or DEFAULT_MODEL)
    if args.against or args.takes:
        raise CodetailorError("--against and --takes compare offline: add --offline")
    report = run_simulation(
        args.repo,
        split=args.split,
        model=args.model or DEFAULT_MODEL,
        adapter=args.adapter,
        setup=setup,
        holdout=args.holdout,
        max_tokens=args.max_tokens,
        only=args.only,
    )
    if args.json:
        print(json.dumps(report))
    else:
        rate = report["acceptance_rate"]
        print(
            f"{report['split']}: {report['accepted']} of {report['shown']} suggestions accepted "
            f"({'-' if rate is None else f'{rate:.1%}'}), {report['accepted_full']} in full"
        )
    return 0


def _simulate_offline(args: argparse.Namespace, setup: Any, model: str) -> int:
    from lsp_server.measure.offline_user import run_offline
    from lsp_server.measure.quiet_offline import quiet_report
    from lsp_server.measure.simulated_user import split_sources

    files = split_sources(args.repo, args.split, args.holdout, args.only)
    arms = None if args.against else _quiet_arms(args.repo, args.quietness)
    report = run_offline(
        files,
        model=model,
        adapter=args.adapter,
        against=args.against,
        setup=setup,
        max_tokens=args.max_tokens,
        keep_takes=args.takes,
        then=None if arms is None else lambda p, o: quiet_report(p, o, arms, setup.min_chars),
    ) | {"split": args.split, "model": model, "min_chars": args.min_chars}
    if args.json:
        print(json.dumps(report))
        return 0
    for arm in ("unfiltered", "global", "filtered"):
        if arm in report:
            r = report[arm]
            print(
                f"{arm}: {r['accepted']} of {r['shown']} shown accepted "
                f"({r['accepted_chars']} characters)"
            )
    for label in ("against", "adapter"):
        if label in report:
            r = report[label]
            print(f"{r['name'] or 'base'}: {r['accepted']} of {r['places']} places accepted")
    if "paired" in report:
        p = report["paired"]
        print(
            f"only before {p['only_before']}, only after {p['only_after']}, "
            f"both {p['both']}; sign test p = {p['sign_test_p']}"
        )
    return 0


def _simulate_next_edits(args: argparse.Namespace, model: str) -> int:
    """`bench simulate --next-edit`: the simulated user of next edits (next_edit_user.py)."""
    from lsp_server.measure.next_edit_user import run_next_edit_user

    if not (args.record or args.offline):
        raise CodetailorError("--next-edit needs --record (write the log) or --offline (the arms)")
    if args.against or args.takes or args.only:
        raise CodetailorError("--against, --takes and --only are for completions")
    if args.samples is not None and args.samples < 1:
        raise CodetailorError("--samples must be at least 1")
    if args.quietness is not None and not 0 <= args.quietness <= 95:
        raise CodetailorError(f"--quietness {args.quietness}: give a percentage from 0 to 95")
    report = run_next_edit_user(args, model)
    if args.json:
        print(json.dumps(report))
        return 0
    if "recorded" in report:
        r = report["recorded"]
        print(
            f"recorded: {r['shown']} next edits shown ({r['explored']} for exploration), "
            f"{r['accepted']} accepted, {r['suppressed']} kept quiet, of {r['places']} places"
        )
    for arm in ("unfiltered", "global", "filtered"):
        if arm in report:
            r = report[arm]
            precision = "-" if r["shown_precision"] is None else f"{r['shown_precision']:.1%}"
            print(f"{arm}: {r['accepted']} of {r['shown']} shown accepted ({precision})")
    return 0


def _quiet_arms(repo: Path, quietness: int | None) -> Any:
    """The show-or-stay-quiet arms of an offline run: the repository's learned filter
    (if it has one; a refused file is one clear error), the global rule, the threshold."""
    from lsp_server.measure.quiet_offline import QuietArms
    from lsp_server.model.loading import cache_home
    from lsp_server.quiet.store import filter_path, read_filter
    from lsp_server.session.settings import Settings

    path = filter_path(repo, cache_home())
    learned = read_filter(path).completion if path.exists() else None
    level = Settings().quietness if quietness is None else quietness
    if not 0 <= level <= 95:
        raise CodetailorError(f"--quietness {level}: give a percentage from 0 to 95")
    return QuietArms(learned, level)


def cmd_bench_latency(args: argparse.Namespace) -> int:
    for file in args.files:
        read_source(file)  # one clear line for a missing, binary or non-UTF-8 file
    if args.steps < 0 or args.max_tokens < 1:
        raise CodetailorError("--steps must be at least 0 and --max-tokens at least 1")
    from lsp_server.session.settings import parse_engine

    try:
        url = parse_engine(args.engine)
    except ValueError as exc:
        raise CodetailorError(f"--engine: {exc}") from None
    from lsp_server.measure.latency import bench_latency, print_tables, write_outputs

    report = bench_latency(
        args.files,
        model=args.model,
        adapter=args.adapter,
        max_tokens=args.max_tokens,
        steps=args.steps,
        naive=not args.no_naive,
        engine=f"openai:{url}" if url else "local",
        local=not args.no_local,
        cold_places_per_file=max(args.cold_places, 0),
        cold_at_once=args.cold_at_once,
        cold_pause_ms=max(args.cold_pause_ms, 0.0),
        baseline_tree=args.baseline_tree,
        dtypes=args.also_dtype,
        dtype=args.dtype,
        bare_client=args.bare_client,
        pause_ms=args.pause_ms,
    )
    if args.out:
        for path in write_outputs(report, args.out):
            print(f"wrote {path}", file=sys.stderr)
    public = {k: v for k, v in report.items() if not k.startswith("_")}
    if args.json:
        print(json.dumps(public, indent=2))
    else:
        print_tables(report)
    return 0


def cmd_bench_script(args: argparse.Namespace) -> int:
    """`bench engine` and `bench overhead` keep their own option parsers."""
    if args.script == "engine":
        from lsp_server.measure.engine_speed import main as engine_main

        return engine_main(args.rest)
    if args.script == "remote":
        from lsp_server.measure.remote_overhead import main as remote_main

        return remote_main(args.rest)
    if args.script == "nextedit":
        from lsp_server.measure.next_edit_speed import main as next_edit_main

        return next_edit_main(args.rest)
    if args.script == "memory":
        from lsp_server.measure.server_memory import main as memory_main

        return memory_main(args.rest)
    if args.script == "load":
        from lsp_server.measure.load_time import main as load_main

        return load_main(args.rest)
    if args.script == "int4":
        from lsp_server.measure.int4_wide import main as int4_main

        return int4_main(args.rest)
    if args.script == "swap":
        from lsp_server.measure.adapter_swap import main as swap_main

        return swap_main(args.rest)
    from lsp_server.measure.server_overhead import main as overhead_main

    return overhead_main(args.rest)
