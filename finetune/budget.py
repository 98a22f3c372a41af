"""How many steps a run takes: its epochs or `max_steps`, cut to fit a time budget.

`time_budget_minutes` counts the whole run, data preparation and the final
measurements included. A `StepPlan` starts at the steps the data asks for
(`limit`); after the first `MEASURE_STEPS` steps it knows roughly what a step costs
and plans the steps that fit before the deadline, keeping back what the final
measurements will take (as long as the first ones took, the base model's, with a
margin) and what the periodic held-out evaluations cost on the way. That first plan
is provisional: three steps say little where rows differ fourfold in length
(256-token FIM rows beside next-edit rows of up to 1,024 tokens) and the first steps
warm up. After `FINAL_PLAN_STEPS` steps the plan is made again from their mean pace,
and this once it may grow (up to `limit`); two default CPU runs whose plan came from
three steps only, and could only shrink after, ended at 11 and 16 of their 25
minutes. Later the plan can only be cut, never lengthened (the learning rate would
rise again), and by the mean pace of the last `PACE_STEPS` steps, not of a few: a
burst of long rows or a minute of other work on the same cores moves that mean a
little, and a machine that stays slower cuts the plan within those steps. The
deadline itself stops the loop as a last resort. The learning rate reads the plan
(`finetune.schedule.lr_schedule`), so the cosine reaches its floor at the planned
end: a budget that cuts the run short still ends it at the lowest rate.

The plan is saved in every checkpoint: a resumed run keeps the plan it started
with. The clock is injected, so tests plan from fake step times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

Clock = Callable[[], float]

MEASURE_STEPS = 4  # steps timed before the first plan (the first one warms up, so it is left out)
FINAL_PLAN_STEPS = 20  # steps timed before the final plan, the last that may lengthen it
PACE_STEPS = 50  # the steps whose mean time checks the plan after every step
FINISH_MARGIN = 1.25  # the final measurements take the first ones' time, this much more
CPU_BUDGET_MINUTES = 25.0  # the default on a CPU: a default run ends within 30 minutes
PREPARE_SHARE = 0.2  # the most of the budget that mining the history may take

# Why a run stopped: the keys of the summary's `stop_reason`.
EPOCHS, MAX_STEPS, BUDGET, EARLY_STOP = "epochs", "max_steps", "budget", "early_stop"


def budget_seconds(minutes: float | None, device: str) -> float | None:
    """The run's budget in seconds: `minutes` where set (0: none), else 25 minutes on a
    CPU and none on a GPU (where a default run is quick and a long one is wanted)."""
    if minutes is None:
        return CPU_BUDGET_MINUTES * 60 if device == "cpu" else None
    return minutes * 60 if minutes > 0 else None


class Deadline:
    """The run's end by the clock (None: no budget), from the moment the run started."""

    def __init__(self, seconds: float | None, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.seconds = seconds

    @property
    def at(self) -> float | None:
        return None if self.seconds is None else self.started + self.seconds

    def left(self) -> float:
        """Seconds left (infinite without a budget)."""
        return math.inf if self.at is None else self.at - self.clock()

    def passed(self) -> bool:
        return self.left() <= 0

    def share_passed(self, share: float) -> Callable[[], bool]:
        """A check: whether `share` of the budget has gone by (never, without one)."""
        if self.seconds is None:
            return lambda: False
        until = self.started + self.seconds * share
        return lambda: self.clock() >= until


@dataclass
class PlanState:
    """What a checkpoint keeps of the plan."""

    total: int
    limit: int
    limit_reason: str  # EPOCHS or MAX_STEPS: what `limit` comes from
    planned: bool = False  # whether the step time has been measured and the plan made
    seconds_per_step: float | None = None


class StepPlan:
    """The steps the run takes, planned to fit the deadline (see the module docstring)."""

    def __init__(
        self,
        limit: int,
        limit_reason: str,
        deadline: Deadline,
        *,
        eval_every: int = 0,
    ) -> None:
        self.deadline = deadline
        self.eval_every = eval_every
        self.state = PlanState(limit, limit, limit_reason)
        self.kept = False  # a resumed run keeps the plan it started with
        self.finish_seconds = 0.0  # what the final measurements will take
        self.eval_seconds = 0.0  # what one periodic evaluation takes
        self._marks: list[tuple[int, float]] = []  # (step, clock) at step ends

    @property
    def total(self) -> int:
        return self.state.total

    @property
    def limit(self) -> int:
        return self.state.limit

    def to_dict(self) -> dict:
        return asdict(self.state)

    def restore(self, saved: dict) -> None:
        """Take the plan a checkpoint saved (a resumed run keeps it; a `max_steps` or
        `epochs` given again can only shorten it)."""
        if not saved:
            return
        limit, reason = self.state.limit, self.state.limit_reason
        self.state = PlanState(**saved)
        if limit != self.state.limit:
            was_cut = self.state.total < self.state.limit
            self.state.limit, self.state.limit_reason = limit, reason
            self.state.total = min(self.state.total, limit) if was_cut else limit
        self.kept = self.state.planned

    def measured_start(self, measure_seconds: float, eval_seconds: float) -> None:
        """The first measurements took `measure_seconds` (the final ones will take as long),
        and one held-out loss evaluation `eval_seconds`."""
        self.finish_seconds = measure_seconds * FINISH_MARGIN
        self.eval_seconds = eval_seconds

    def step_done(self, step: int) -> bool:
        """Record the end of `step` (1-based); plan or cut the plan where it is time to.
        Returns whether the plan changed."""
        if self.deadline.at is None or self.kept:
            return False
        now = self.deadline.clock()
        self._marks.append((step, now))
        if len(self._marks) < MEASURE_STEPS or step >= self.total:
            return False
        provisional = not self.state.planned
        self.state.planned = True
        grow = provisional or len(self._marks) == FINAL_PLAN_STEPS
        return self._fit(step, now, self._per_step(step, now), grow=grow)

    def _per_step(self, step: int, now: float) -> float:
        """Seconds per step from here on: the mean over the last `PACE_STEPS` steps (the
        warm-up step left out) without the evaluations made among them, plus the
        evaluations' share."""
        first, began = self._marks[-PACE_STEPS - 1 :][0]
        every = self.eval_every
        # The evaluation after step k runs after this call for step k: it is in k + 1's span.
        evaluations = (step - 1) // every - (first - 1) // every if every else 0
        spent = now - began - evaluations * self.eval_seconds
        share = self.eval_seconds / every if every else 0.0
        return max(spent, 0.0) / (step - first) + share

    def _fit(self, step: int, now: float, per_step: float, *, grow: bool) -> bool:
        """Fit the plan to the steps that fit before the deadline: only cut it, unless
        `grow` (the first plans), and never past `limit`."""
        assert self.deadline.at is not None
        if grow:  # the first plan always grows: the pace it keeps is the last grown one's
            self.state.seconds_per_step = per_step
        room = self.deadline.at - now - self.finish_seconds
        fits = step + max(0, math.floor(room / per_step)) if per_step > 0 else self.limit
        new = max(step, min(self.limit if grow else self.total, fits))
        changed = new != self.total
        self.state.total = new
        return changed

    def out_of_time(self, step: int) -> bool:
        """Whether the deadline leaves no room for another step before the final
        measurements (the machine got slower than any plan foresaw); if so, the plan ends
        at `step`."""
        if self.deadline.at is None or self.deadline.left() > self.finish_seconds:
            return False
        self.state.total = min(self.total, step)
        return True

    def stop_reason(self, step: int, stopped_early: bool) -> str:
        """Why a run that ended at `step` ended there."""
        if stopped_early:
            return EARLY_STOP
        if step < self.limit:
            return BUDGET
        return self.state.limit_reason
