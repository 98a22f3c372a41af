"""`codetailor feedback stats|clear`: what the local feedback log says about your completions.

Acceptance (accepted in full or in part, or typed through to the end) and
retention (accepted text still in the document 30 s and 2 min later) overall,
by language, by trigger kind and per day; the median latency of accepted and
of ignored suggestions; and a PNG of acceptance over time. Beside them, under each
show-or-stay-quiet filter, completions and next edits shown, accepted and kept quiet.
The log is read where the server writes it (`$CODETAILOR_HOME/feedback/<repo key>/`); nothing
leaves the machine.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lsp_server.errors import CodetailorError
from lsp_server.feedback import (
    FeedbackEvent,
    NextEditRecord,
    SuggestionRecord,
    Suppressed,
    count_events,
    feedback_dir,
    next_edit_records,
    read_events,
    remove_log,
    suggestion_records,
)
from lsp_server.measure.quality.metrics import percentile
from lsp_server.model.preflight import check_plotting

EXAMPLES = """\
examples:
  codetailor feedback stats                     # the repository in the current folder
  codetailor feedback stats ~/src/project --json
  codetailor feedback stats --plot acceptance.png
  codetailor feedback learn ~/src/project       # learn when to stay quiet from the log
  codetailor feedback clear ~/src/project       # delete that repository's log
"""


def log_folder(repo: str | Path) -> Path:
    """The feedback log folder of the repository at `repo`."""
    from lsp_server.model.loading import cache_home

    return feedback_dir(repo, cache_home())


def rates(records: Sequence[SuggestionRecord]) -> dict[str, Any]:
    """Counts and rates for some suggestions: shown, accepted, and retention of the accepted."""
    accepted = [r for r in records if r.was_accepted]
    out: dict[str, Any] = {
        "shown": len(records),
        "accepted": len(accepted),
        "acceptance_rate": round(len(accepted) / len(records), 4) if records else None,
        "dismissed": sum(r.dismissed and not r.was_accepted for r in records),
    }
    for check in ("retained_30s", "retained_120s"):
        checked = [r.retained[check] for r in accepted if check in r.retained]
        out[check] = round(sum(checked) / len(checked), 4) if checked else None
        out[check + "_checked"] = len(checked)
    return out


def _grouped(
    records: Iterable[SuggestionRecord], key: Callable[[SuggestionRecord], str]
) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[SuggestionRecord]] = defaultdict(list)
    for r in records:
        groups[key(r)].append(r)
    return {k: rates(v) for k, v in sorted(groups.items())}


def day_of(record: SuggestionRecord) -> str:
    return datetime.fromtimestamp(record.time, timezone.utc).date().isoformat()


def filter_of(quiet: dict[str, Any] | None) -> str:
    """Which filter decided a suggestion: "none" (none applied, or a log from before the
    filter), "global" (the starting rule) or "learned" (the repository's own)."""
    name = (quiet or {}).get("filter")
    return name if name in ("global", "learned") else "none"


def quiet_stats(
    records: Sequence[SuggestionRecord], suppressed: Sequence[Suppressed]
) -> dict[str, Any]:
    """Shown, accepted, suppressed and the acceptance rate under each filter (before and
    after the learned one), and per day; shown for exploration counted apart."""
    out: dict[str, Any] = {}
    for name in ("none", "global", "learned"):
        mine = [r for r in records if filter_of(r.shown.quiet) == name]
        hidden = sum(filter_of(e.quiet) == name for e in suppressed)
        if mine or hidden:
            explored = sum(bool((r.shown.quiet or {}).get("explore")) for r in mine)
            out[name] = rates(mine) | {"suppressed": hidden, "explored": explored}
    days: dict[str, int] = defaultdict(int)
    for e in suppressed:
        days[datetime.fromtimestamp(e.t, timezone.utc).date().isoformat()] += 1
    by_day = _grouped(records, day_of)
    for day in sorted(set(days) | set(by_day)):
        by_day.setdefault(day, rates([]))["suppressed"] = days.get(day, 0)
    return {"by_filter": out, "by_day": dict(sorted(by_day.items()))}


def next_edit_stats(
    records: Sequence[NextEditRecord], suppressed: Sequence[Suppressed]
) -> dict[str, Any]:
    """Next edits shown, accepted, kept quiet and shown for exploration under each filter
    (`filter_of`), with the acceptance rate (the precision of the shown ones)."""
    out: dict[str, Any] = {}
    for name in ("none", "global", "learned"):
        mine = [r for r in records if filter_of(r.shown.quiet) == name]
        hidden = sum(filter_of(e.quiet) == name for e in suppressed)
        if mine or hidden:
            accepted = sum(r.was_accepted for r in mine)
            out[name] = {
                "shown": len(mine),
                "accepted": accepted,
                "acceptance_rate": round(accepted / len(mine), 4) if mine else None,
                "suppressed": hidden,
                "explored": sum(bool((r.shown.quiet or {}).get("explore")) for r in mine),
            }
    return {"by_filter": out}


@dataclass(frozen=True)
class LogView:
    """The log as `feedback stats` reads it: completions and next edits, each with the
    ones the filter kept quiet."""

    records: list[SuggestionRecord]
    suppressed: list[Suppressed]
    edits: list[NextEditRecord]
    edits_suppressed: list[Suppressed]


def read_log(folder: Path, source: str | None = None) -> LogView:
    """The log's shown suggestions and next edits, and the ones the filter kept quiet, of
    `source` only when given."""
    events: list[FeedbackEvent] = read_events(folder)
    records = suggestion_records(events)
    hidden = [e for e in events if isinstance(e, Suppressed)]
    if source is not None:
        records = [r for r in records if r.shown.source == source]
        hidden = [e for e in hidden if e.source == source]
    return LogView(
        records,
        [e for e in hidden if e.suggestions != "next_edit"],
        next_edit_records(events, source),
        [e for e in hidden if e.suggestions == "next_edit"],
    )


def feedback_stats(records: Sequence[SuggestionRecord]) -> dict[str, Any]:
    """The figures `feedback stats` prints, as one JSON-ready object."""
    accepted = [r.shown.latency_ms for r in records if r.was_accepted]
    ignored = [r.shown.latency_ms for r in records if not r.was_accepted]
    return {
        "overall": rates(records),
        "by_language": _grouped(records, lambda r: r.shown.language or "unknown"),
        "by_trigger": _grouped(records, lambda r: r.shown.trigger or "unknown"),
        "by_day": _grouped(records, day_of),
        "latency_ms_p50": {
            "accepted": round(percentile(accepted, 50), 1) if accepted else None,
            "ignored": round(percentile(ignored, 50), 1) if ignored else None,
        },
        "by_source": _grouped(records, lambda r: r.shown.source),
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _ms(value: float | None) -> str:
    return "- (none yet)" if value is None else f"{value} ms"


STATS_COLUMNS = ("", "shown", "accepted", "rate", "kept 30s", "kept 2min")


def stats_rows(group: dict[str, Any]) -> list[tuple[str, ...]]:
    """A row per entry of `group` (name -> rates): counts and percentages."""
    return [
        (
            name,
            str(r["shown"]),
            str(r["accepted"]),
            _pct(r["acceptance_rate"]),
            _pct(r["retained_30s"]),
            _pct(r["retained_120s"]),
        )
        for name, r in group.items()
    ]


def print_stats(stats: dict[str, Any], folder: Path) -> None:
    """The figures as tables on stdout: overall, by language, trigger and day; latency."""
    from lsp_server.measure.tables import print_table

    print(f"feedback log: {folder}")
    print_table(STATS_COLUMNS, stats_rows({"overall": stats["overall"]}))
    for title in ("by_language", "by_trigger", "by_day"):
        print_table(STATS_COLUMNS, stats_rows(stats[title]), title=title.replace("_", " "))
    lat = stats["latency_ms_p50"]
    print(f"median latency: accepted {_ms(lat['accepted'])}, ignored {_ms(lat['ignored'])}")
    quiet = stats.get("quiet", {}).get("by_filter", {})
    if set(quiet) - {"none"}:
        columns = ("filter", "shown", "accepted", "rate", "suppressed", "explored")
        rows = [
            (k, str(v["shown"]), str(v["accepted"]), _pct(v["acceptance_rate"]))
            + (str(v["suppressed"]), str(v["explored"]))
            for k, v in quiet.items()
        ]
        print_table(columns, rows, title="show or stay quiet (none: no filter applied)")
    edits = stats.get("next_edits", {}).get("by_filter", {})
    if edits:
        columns = ("filter", "shown", "accepted", "rate", "suppressed", "explored")
        rows = [
            (k, str(v["shown"]), str(v["accepted"]), _pct(v["acceptance_rate"]))
            + (str(v["suppressed"]), str(v["explored"]))
            for k, v in edits.items()
        ]
        print_table(columns, rows, title="next edits (none: no filter applied)")


def plot_acceptance(records: Sequence[SuggestionRecord], out: Path, window: int = 50) -> Path:
    """A PNG of acceptance over time: per day, and a moving average over `window` suggestions;
    a dashed line where the learned show-or-stay-quiet filter began to decide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = [datetime.fromtimestamp(r.time, timezone.utc) for r in records]
    hits = [1.0 if r.was_accepted else 0.0 for r in records]
    moving = [
        sum(hits[max(0, i - window + 1) : i + 1]) / (i + 1 - max(0, i - window + 1))
        for i in range(len(hits))
    ]
    days = feedback_stats(records)["by_day"]
    fig, ax = plt.subplots(figsize=(8, 4))
    # matplotlib plots datetimes; its stubs say floats.
    ax.plot(times, moving, label=f"last {window} suggestions", linewidth=1.2)  # type: ignore[arg-type]
    ax.plot(
        [datetime.fromisoformat(d).replace(hour=12, tzinfo=timezone.utc) for d in days],  # type: ignore[arg-type]
        [v["acceptance_rate"] for v in days.values()],
        "o",
        label="per day",
    )
    learned = [
        t for t, r in zip(times, records, strict=True) if filter_of(r.shown.quiet) == "learned"
    ]
    if learned:  # where the repository's own show-or-stay-quiet filter began to decide
        ax.axvline(learned[0], color="grey", linestyle="--", label="learned filter on")  # type: ignore[arg-type]
    ax.set_ylim(0, 1)
    ax.set_ylabel("acceptance rate")
    ax.set_title(f"Acceptance over time ({len(records)} suggestions)")
    ax.legend(loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def register(sub: argparse._SubParsersAction) -> None:
    """Add `codetailor feedback stats|clear`."""
    feedback = sub.add_parser(
        "feedback",
        help="the local feedback log: acceptance statistics, or clear it",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kinds = feedback.add_subparsers(dest="feedback", required=True, metavar="ACTION")
    stats = kinds.add_parser("stats", help="acceptance and retention from the log")
    stats.add_argument("repo", nargs="?", default=".", metavar="REPO", help="default: .")
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.add_argument("--plot", type=Path, metavar="FILE.png", help="write a PNG plot")
    stats.add_argument("--source", choices=("editor", "simulated"), help="only these events")
    stats.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    stats.set_defaults(func=cmd_stats)
    learn = kinds.add_parser(
        "learn", help="learn when to stay quiet: the repository's show-or-stay-quiet filter"
    )
    learn.add_argument("repo", nargs="?", default=".", metavar="REPO", help="default: .")
    learn.add_argument("--source", choices=("editor", "simulated"), help="only these events")
    learn.add_argument("--seed", type=int, default=0, help="the trees' seed (default 0)")
    learn.add_argument(
        "--force",
        action="store_true",
        help="store the filter even where it earns no more than the global rule on the log's "
        "latest quarter",
    )
    learn.add_argument("--json", action="store_true", help="print one JSON object")
    learn.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    learn.set_defaults(func=cmd_learn)
    clear = kinds.add_parser("clear", help="delete the repository's feedback log")
    clear.add_argument("repo", nargs="?", default=".", metavar="REPO", help="default: .")
    clear.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    clear.set_defaults(func=cmd_clear)


def cmd_stats(args: argparse.Namespace) -> int:
    repo = Path(args.repo).expanduser()
    if not repo.is_dir():
        raise CodetailorError(f"{repo} is not a folder; give the repository's root")
    if args.plot:
        check_plotting()  # before reading the whole log
    folder = log_folder(repo)
    view = read_log(folder, source=args.source)
    records = view.records
    if not records and not view.edits:
        raise CodetailorError(
            f"no feedback recorded for {repo.resolve()} (looked in {folder}); it fills as you "
            "use completions with the `feedback` setting on"
        )
    stats = feedback_stats(records) | {"log": str(folder)}
    stats["quiet"] = quiet_stats(records, view.suppressed)
    stats["next_edits"] = next_edit_stats(view.edits, view.edits_suppressed)
    if args.plot:
        print(f"wrote {plot_acceptance(records, args.plot)}", file=sys.stderr)
    if args.json:
        print(json.dumps(stats, indent=2))
    else:
        print_stats(stats, folder)
    return 0


def cmd_learn(args: argparse.Namespace) -> int:
    """`codetailor feedback learn`: learn the filter from the log, store it beside it."""
    from lsp_server.quiet.learn import learn_for_repo

    repo = Path(args.repo).expanduser()
    if not repo.is_dir():
        raise CodetailorError(f"{repo} is not a folder; give the repository's root")
    report = learn_for_repo(
        repo, log_folder(repo), source=args.source, seed=args.seed, force=args.force
    )
    if args.json:
        print(json.dumps(report))
        return 0
    print_learned("completions", report)
    print_learned("next edits", report["next_edit"])
    return 0


def print_learned(what: str, report: dict[str, Any]) -> None:
    """One kind's lines of `feedback learn`: what it learned from, how the learners did on
    the log's latest part, and whether the filter was kept; or why there is none."""
    if "error" in report:
        print(f"{what}: no filter learned: {report['error']}")
        return
    v = report["validation"]
    print(
        f"{what}: learned from {report['examples']} ({report['accepted']} accepted); on "
        f"the latest {v['global']['validation']} the reward at quietness 25 was: "
        + ", ".join(f"{k} {f['reward']}" for k, f in v.items())
    )
    if report["stored"]:
        print(f"{what}: kept {report['learner']}: wrote {report.get('path', 'the filter')}")
    else:
        print(
            f"{what}: not kept: {report['learner']} does not beat the global rule there "
            "(--force keeps it)"
        )


def cmd_clear(args: argparse.Namespace) -> int:
    folder = log_folder(Path(args.repo).expanduser())
    if not folder.exists():
        print(f"no feedback log at {folder}", file=sys.stderr)
        return 0
    try:
        removed = f"{count_events(folder)} events"
    except CodetailorError:  # a segment that cannot be read: the log goes all the same
        removed = "the log"
    remove_log(folder)
    print(f"removed {removed} ({folder})", file=sys.stderr)
    return 0
