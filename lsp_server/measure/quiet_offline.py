"""The show-or-stay-quiet filter measured with the simulated user, paired place by place.

At the fixed places of `bench simulate --offline` (offline_user.py) the model completes
once per place (for next edits: once per mined history example, next_edit_user.py); each
arm then decides, with the same features the server computes (`lsp_server.quiet.features`,
or `edit_features` for next edits; its history following what that arm showed and the
user took), whether to show the suggestion (a `Candidate`): `unfiltered` shows all,
`global` applies the starting rule, `filtered` the repository's learned filter, each at
the threshold of the same `quietness`. The simulated user's rule (`accepted_text`; for
next edits: the window the commit wrote) decides what is taken of what is shown. Since
all arms see the same suggestions at the same places, they are paired: the report gives
each arm's shown / accepted / accepted_chars, the ratios of acceptance rate, of accepted
suggestions and of accepted characters and the difference of reward (Cursor's 0.75 for
an accepted suggestion, -0.25 for a rejected one, 0 for silence), each with a 95%
bootstrap interval (places drawn with replacement), and how many accepted and rejected
suggestions one arm hid that the other showed. (A sign test over the places where two
arms differ would weigh a hidden rejection, +0.25, like a hidden acceptance, -0.75.)
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lsp_server.completion.languages import language_for
from lsp_server.measure.offline_user import Offered, Place
from lsp_server.measure.replay import accepted_text
from lsp_server.quiet.features import History, features
from lsp_server.quiet.filter import GLOBAL, QuietFilter, threshold

ACCEPT_REWARD, REJECT_REWARD = 0.75, -0.25
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Outcome:
    """One arm at one place: shown or not, taken or not, and how many characters taken."""

    shown: bool
    taken: int  # characters taken
    accepted: bool = False

    @property
    def reward(self) -> float:
        if not self.shown:
            return 0.0
        return ACCEPT_REWARD if self.accepted else REJECT_REWARD


Rates = tuple[float, float, float]  # History.rates(key)


@dataclass(frozen=True)
class Candidate:
    """What one place offers the arms: a suggestion in document `key`, its features once
    the arm's history is known, and what the user does with it if shown."""

    key: str
    features: Callable[[Rates], list[float]]
    accepted: bool
    taken: int  # characters the user takes when it is shown


def run_candidates(
    candidates: Sequence[Candidate | None], quiet: QuietFilter | None, quietness: int
) -> list[Outcome]:
    """What the simulated user saw and took at each place (None: nothing offered there)
    under `quiet` (None: all shown)."""
    history, line = History(), threshold(quietness)
    out: list[Outcome] = []
    for i, c in enumerate(candidates):
        if c is None or (
            quiet is not None and quiet.score(c.features(history.rates(c.key))) < line
        ):
            out.append(Outcome(False, 0))
            continue
        history.shown(c.key, str(i))
        if c.accepted:
            history.accepted(str(i))
        out.append(Outcome(True, c.taken, c.accepted))
    return out


def completion_candidates(
    places: Sequence[Place], offered: Sequence[Offered], min_chars: int
) -> list[Candidate | None]:
    """The completions offered at the places, as candidates (None where it was blank)."""
    out: list[Candidate | None] = []
    for place, o in zip(places, offered, strict=True):
        if not o.text.strip():
            out.append(None)
            continue
        take = accepted_text(o.text, place.truth, min_chars)

        def featurize(rates: Rates, place: Place = place, o: Offered = o) -> list[float]:
            return features(
                place.text[: place.offset],
                place.text[place.offset :],
                o.text,
                language_for(place.path).name,
                history=rates,
                logprobs=o.logprobs,
                entropies=o.entropies,
            )

        out.append(Candidate(place.path, featurize, bool(take), len(take)))
    return out


def run_arm(
    places: Sequence[Place],
    offered: Sequence[Offered],
    quiet: QuietFilter | None,
    quietness: int,
    min_chars: int,
) -> list[Outcome]:
    """What the simulated user saw and took at each place under `quiet` (None: all shown)."""
    return run_candidates(completion_candidates(places, offered, min_chars), quiet, quietness)


def arm_summary(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    shown = sum(o.shown for o in outcomes)
    accepted = sum(o.accepted for o in outcomes)
    return {
        "shown": shown,
        "accepted": accepted,
        "accepted_chars": sum(o.taken for o in outcomes),
        "acceptance_rate": round(accepted / shown, 4) if shown else None,
        "reward": round(sum(o.reward for o in outcomes), 2),
    }


def _figures(a: Sequence[Outcome], b: Sequence[Outcome], idx: Sequence[int]) -> list[float]:
    """Arm a against arm b on places `idx`: [acceptance-rate ratio, accepted-chars ratio,
    reward difference, accepted ratio] (NaN where a ratio is undefined)."""
    sa, sb = sum(a[i].shown for i in idx), sum(b[i].shown for i in idx)
    ka, kb = sum(a[i].accepted for i in idx), sum(b[i].accepted for i in idx)
    ca, cb = sum(a[i].taken for i in idx), sum(b[i].taken for i in idx)
    rate = (ka / sa) / (kb / sb) if sa and sb and kb else float("nan")
    chars = ca / cb if cb else float("nan")
    kept = ka / kb if kb else float("nan")
    return [rate, chars, sum(a[i].reward - b[i].reward for i in idx), kept]


def compare_arms(
    a: Sequence[Outcome], b: Sequence[Outcome], seed: int = 0, reps: int = BOOTSTRAP
) -> dict[str, Any]:
    """Arm `a` against arm `b` at the same places: the acceptance-rate and accepted-chars
    ratios and the reward difference, each with a 95% bootstrap interval (places drawn
    with replacement), and what `a` hid of what `b` showed."""
    n = len(a)
    point = _figures(a, b, range(n))
    rng = random.Random(seed)
    samples = [_figures(a, b, [rng.randrange(n) for _ in range(n)]) for _ in range(reps)]

    def interval(k: int) -> list[float] | None:
        values = sorted(s[k] for s in samples if s[k] == s[k])  # NaN dropped
        if len(values) < reps // 2:
            return None
        low, high = values[int(0.025 * len(values))], values[int(0.975 * len(values)) - 1]
        return [round(low, 3), round(high, 3)]

    def value(k: int) -> float | None:  # None where the ratio is undefined (JSON has no NaN)
        return None if point[k] != point[k] else round(point[k], 3)

    hidden = [(x, y) for x, y in zip(a, b, strict=True) if y.shown and not x.shown]
    return {
        "accepted_ratio": value(3),
        "accepted_ratio_95": interval(3),
        "acceptance_rate_ratio": value(0),
        "acceptance_rate_ratio_95": interval(0),
        "accepted_chars_ratio": value(1),
        "accepted_chars_ratio_95": interval(1),
        "reward_difference": round(point[2], 2),
        "reward_difference_95": interval(2),
        "hid_accepted": sum(y.accepted for _, y in hidden),
        "hid_rejected": sum(not y.accepted for _, y in hidden),
    }


@dataclass(frozen=True)
class QuietArms:
    """Which filters the arms apply, at which quietness."""

    learned: QuietFilter | None  # the repository's filter (None: no `filtered` arm)
    quietness: int
    global_rule: QuietFilter = GLOBAL


def quiet_report(
    places: Sequence[Place], offered: Sequence[Offered], arms_of: QuietArms, min_chars: int
) -> dict[str, Any]:
    """Every arm's figures at the same places, and the paired comparisons."""
    return arms_report(completion_candidates(places, offered, min_chars), arms_of)


def arms_report(candidates: Sequence[Candidate | None], arms_of: QuietArms) -> dict[str, Any]:
    """Every arm's figures on the same candidates, and the paired comparisons: the one
    implementation behind the completions' and the next edits' reports."""
    learned, global_rule, quietness = arms_of.learned, arms_of.global_rule, arms_of.quietness
    arms = {
        "unfiltered": run_candidates(candidates, None, quietness),
        "global": run_candidates(candidates, global_rule, quietness),
    }
    if learned is not None:
        arms["filtered"] = run_candidates(candidates, learned, quietness)
    report: dict[str, Any] = {name: arm_summary(o) for name, o in arms.items()}
    report["quietness"] = quietness
    report["paired"] = {"global_vs_unfiltered": compare_arms(arms["global"], arms["unfiltered"])}
    if learned is not None:
        report["filtered"]["learner"] = learned.learned.get("learner")
        report["paired"]["filtered_vs_unfiltered"] = compare_arms(
            arms["filtered"], arms["unfiltered"]
        )
        report["paired"]["filtered_vs_global"] = compare_arms(arms["filtered"], arms["global"])
    return report
