"""`codetailor bench simulate REPO --next-edit`: a simulated user of next edits, on real history.

The places are the examples `eval --next-edit` mines from the repository's own commits
(`lsp_server.repo.history`: a commit's hunks, the earlier ones as the edit history and
the next one as the target, beside "no edit" windows): with `--split train` those of the
commits before the cut, else those of the newest `--holdout` share (held out as `eval`
holds them out). At each place the server's next-edit predictor rewrites the window
once, with no time budget, so the machine's load does not decide what it answers. The
edit judged is the one the rewrite made, whether or not the predictor's own gate held
it back: the show-or-stay-quiet decision judges it, as the session does
(lsp_server.session.next_edits). The simulated user accepts a shown edit when the window
it leaves is the one the commit wrote, whitespace aside: `eval --next-edit`'s exact
match on a window where an edit is due (`Scored.right`, ungated); any other shown edit
is rejected.

- `record`: the places in order through the session's decision (`decide_with` on
  `edit_features`, with the repository's next-edit filter as the server reads it,
  `FilterFile`: its global rule while it has none; 5% exploration; a history of this
  user's accepts), each edit logged with its decision as the server logs it (a
  `Recording` labelled `source: "simulated"`: `next_edit_shown`, or `suppressed`), the
  accepted ones accepted by their id. `codetailor feedback learn REPO` learns from it.
- `edit_report`: the show-or-stay-quiet arms on the same answers (quiet_offline.py's
  `arms_report`, the completions' implementation): `unfiltered`, `global` (the
  flask-chosen gate), `filtered` (the repository's learned next-edit filter), paired.

The model runs in this process (no LSP server): the places' edit history comes from the
miner, not from keystrokes an editor would send.
"""

from __future__ import annotations

import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from lsp_server.completion.languages import language_for
from lsp_server.completion.next_edit_gate import OPEN_GATE
from lsp_server.measure.quality.next_edit_eval import Scored
from lsp_server.measure.quiet_offline import Candidate, QuietArms, Rates, arms_report
from lsp_server.quiet.edit_features import edit_features
from lsp_server.quiet.features import History
from lsp_server.repo.edit_examples import NextEditExample
from lsp_server.session.ports import ShownNextEdit
from lsp_server.session.quiet import QuietDecision


def candidate(scored: Scored) -> Candidate | None:
    """The edit one answer offers the arms (None: the rewrite made no edit)."""
    ungated = scored.regated(OPEN_GATE)
    edit, answer = ungated.answer.edit, ungated.answer
    if edit is None or answer.updated is None:
        return None
    request = scored.example.request
    window, language = request.window, language_for(request.path).name

    def featurize(rates: Rates) -> list[float]:
        return edit_features(
            window.current, window.cursor, edit, answer.confidence, language, history=rates
        )

    right = ungated.right
    return Candidate(request.path, featurize, right, len(edit.text) if right else 0)


def edit_report(scored: Sequence[Scored], arms: QuietArms) -> dict[str, Any]:
    """The arms on the same answers, with each arm's `shown_precision` (its acceptance
    rate: the share of shown edits that were the commit's) and `accepted_edits`."""
    report = arms_report([candidate(s) for s in scored], arms)
    for name in ("unfiltered", "global", "filtered"):
        if name in report:
            arm = report[name]
            arm["shown_precision"] = arm["acceptance_rate"]
            arm["accepted_edits"] = arm["accepted"]
    report["places"] = len(scored)
    report["edit_due"] = sum(s.example.edit_due for s in scored)
    report["rewrites_with_an_edit"] = sum(candidate(s) is not None for s in scored)
    return report


def record(
    repo: Path,
    answered: Iterable[Scored],
    *,
    home: Path,
    quietness: int,
    seed: int = 0,
    facts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The places in order through the server's decision, logged to `repo`'s feedback log
    under `home` as the server logs them, each as soon as it is answered (so a run cut
    short keeps what it did); what the simulated user saw and took, and the answers
    (`scored`)."""
    from lsp_server.feedback import SIMULATED_CLIENT, Recording
    from lsp_server.quiet.store import FilterFile

    filters = FilterFile(home)
    filters.start(repo)
    recording = Recording(home)
    recording.start(repo, True, SIMULATED_CLIENT)
    rng, history, counts = random.Random(seed), History(), Counter[str]()
    scored: list[Scored] = []
    try:
        for s in answered:
            scored.append(s)
            _record_one(s, repo, recording, filters, quietness, rng, history, counts, facts)
    except KeyboardInterrupt:  # Ctrl-C between two places: keep what is logged
        print(f"interrupted after {len(scored)} places", file=sys.stderr)
    recording.flush(timeout=120.0)  # every event on disk before `feedback learn` reads
    recording.close()
    return {
        "places": len(scored),
        "rewrites_with_an_edit": sum(candidate(s) is not None for s in scored),
        **{k: counts[k] for k in ("shown", "accepted", "suppressed", "explored")},
        "log": str(recording.recorder.log.folder) if recording.recorder else None,
        "scored": scored,
    }


def _record_one(
    s: Scored,
    repo: Path,
    recording: Any,
    filters: Any,
    quietness: int,
    rng: random.Random,
    history: History,
    counts: Counter[str],
    facts: dict[str, Any] | None,
) -> None:
    """One answered place through the decision, logged; `history` and `counts` follow."""
    from lsp_server.session.quiet import EXPLORE, decide_with

    c = candidate(s)
    if c is None:
        return
    quiet = filters.current("next_edit") if quietness > 0 else None
    decision = None
    if quiet is not None:
        x = c.features(history.rates(c.key))
        decision = decide_with(quiet, x, quietness, explore=EXPLORE, rng=rng)
    shown = _logged(repo, s, c.key, dict(facts or {}), decision)
    if decision is not None and not decision.show:
        recording.next_edit_suppressed(shown)
        counts["suppressed"] += 1
        return
    id = recording.next_edit_shown(shown) or f"unrecorded-{counts['shown']}"
    history.shown(c.key, id)
    counts["shown"] += 1
    counts["explored"] += bool(decision and decision.explore)
    if c.accepted:
        recording.accepted(id, "full")
        history.accepted(id)
        counts["accepted"] += 1


def _logged(
    repo: Path, s: Scored, path: str, facts: dict[str, Any], decision: QuietDecision | None
) -> ShownNextEdit:
    """What the log is handed for the edit of `s`, as the session hands it."""
    window, updated = s.example.request.window, s.regated(OPEN_GATE).answer.updated
    return ShownNextEdit(
        uri=(repo / path).as_uri(),
        path=path,
        start_line=window.start_line,
        original=window.original,
        current=window.current,
        updated=updated or window.current,
        prompt_format=facts.get("next_edit_format"),
        latency_ms=s.latency_ms,
        describe=lambda: facts,
        quiet=decision.as_dict() if decision is not None else None,
    )


def answer_all(
    examples: Sequence[NextEditExample], predictor: Any, label: str = "next edits"
) -> list[Scored]:
    """The predictor's answer at every place, with no time budget, in order."""
    return list(answers(examples, predictor, label))


def answers(
    examples: Sequence[NextEditExample], predictor: Any, label: str = "next edits"
) -> Iterator[Scored]:
    """The predictor's answer at each place in turn, with no time budget. Ctrl-C ends the
    run early with the places answered so far (as `eval --next-edit` does)."""
    from tqdm import tqdm

    from lsp_server.measure.quality.next_edit_eval import evaluate

    with tqdm(total=len(examples), desc=label, unit="place", file=sys.stderr) as bar:
        for example in examples:
            try:
                done = evaluate([example], predictor, time_budget=None)
                bar.update(1)
            except KeyboardInterrupt:
                done = []
            if not done:  # interrupted
                print(f"interrupted after {bar.n} places", file=sys.stderr)
                return
            yield done[0]


def places_of(
    repo: Path,
    split: str,
    holdout: float,
    window_lines: int,
    progress: Callable[[int], object] | None = None,
) -> tuple[list[NextEditExample], dict[str, Any]]:
    """The mined examples of `repo`'s `split` ("train": the commits before the cut,
    "heldout": the newest `holdout` share, held out as `eval --next-edit` does)."""
    from lsp_server.errors import CodetailorError
    from lsp_server.repo.history import mine_split

    history, earlier, held = mine_split(repo, holdout)
    commits = held if split == "heldout" else earlier
    examples = history.examples(
        commits, held_out=split == "heldout", window_lines=window_lines, progress=progress
    )
    if not examples:
        raise CodetailorError(f"the {split} commits of {repo} hold no next-edit examples")
    facts = {"commits": len(commits), "mined_examples": len(examples), "holdout": holdout}
    return examples, facts


def run_next_edit_user(args: Any, model: str) -> dict[str, Any]:
    """`bench simulate --next-edit`: load the model, draw the places, answer them, then
    record the log (`args.record`) and/or report the arms (`args.offline`)."""
    from lsp_server.measure.quality.next_edit_eval import sample
    from lsp_server.model.factory import load_completers
    from lsp_server.model.loading import cache_home
    from lsp_server.model.next_edit import next_edit_predictor
    from lsp_server.model.registry import adapter_ref
    from lsp_server.spec import ModelSpec

    held = load_completers(
        ModelSpec(model=model, dtype=args.dtype or "auto"),
        [adapter_ref(args.adapter) if args.adapter else None],
    )
    predictor = next_edit_predictor(held.completer)
    examples, facts = places_of(args.repo, args.split, args.holdout, predictor.window_lines)
    chosen = sample(examples, args.samples, args.seed)
    started = time.perf_counter()
    quietness = args.quietness if args.quietness is not None else 25
    recorded = None
    if args.record:
        described = {"model": model, "adapter": args.adapter}
        described["next_edit_format"] = predictor.format.name
        recorded = record(
            args.repo,
            answers(chosen, predictor),
            home=cache_home(),
            quietness=quietness,
            seed=args.seed,
            facts=described,
        )
        scored = recorded.pop("scored")
    else:
        scored = answer_all(chosen, predictor)
    report: dict[str, Any] = facts | {
        "split": args.split,
        "model": model,
        "adapter": args.adapter,
        "dtype": held.model.dtype,
        "window_lines": predictor.window_lines,
        "seed": args.seed,
        "answer_s": round(time.perf_counter() - started, 1),
        "stop_reasons": dict(Counter(s.answer.stop_reason for s in scored)),
    }
    if recorded is not None:
        report["recorded"] = recorded
    if args.offline:
        report |= edit_report(scored, _edit_arms(args.repo, quietness))
    return report


def _edit_arms(repo: Path, quietness: int) -> QuietArms:
    """The next-edit arms: the repository's learned next-edit filter (if it has one; a
    refused file is one clear error), the global rule, the threshold."""
    from lsp_server.model.loading import cache_home
    from lsp_server.quiet.filter import GLOBAL_NEXT_EDIT
    from lsp_server.quiet.store import filter_path, read_filter

    path = filter_path(repo, cache_home())
    learned = read_filter(path).next_edit if path.exists() else None
    return QuietArms(learned, quietness, GLOBAL_NEXT_EDIT)
