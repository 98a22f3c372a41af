"""How many steps a run takes: its epochs or `max_steps`, cut to fit a time budget.

`time_budget_minutes` counts the whole run, data preparation and the final
measurements included. A `StepPlan` starts at the steps the data asks for
(`limit`); after the first `MEASURE_STEPS` steps it knows what a step costs and
plans the steps that fit before the deadline, keeping back what the final
measurements will take (as long as the first ones took, the base model's, with a
margin) and what the periodic held-out evaluations cost on the way. The learning
rate reads the plan (`finetune.schedule.lr_schedule`), so the cosine reaches its
floor at the planned end: a budget that cuts the run short still ends it at the
lowest rate. Where the machine gets slower than it was measured (other work on the
same cores), the plan is cut again (checked after every step against the median of the
last few; never lengthened: the rate would rise again), and the deadline itself stops
the loop as a last resort.

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
RECENT_STEPS = 5  # after the plan, the steps whose median time checks it after every step
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
        if not self.state.planned:
            if len(self._marks) < MEASURE_STEPS or step >= self.total:
                return False
            (first, t0), (last, t1) = self._marks[0], self._marks[-1]
            per_step = (t1 - t0) / (last - first)
            if self.eval_every:
                per_step += self.eval_seconds / self.eval_every
            self.state.planned = True
            return self._fit(step, now, per_step)
        return self._fit(step, now, self._recent_per_step())

    def _recent_per_step(self) -> float:
        """Seconds per step now: the median of the last few steps (an evaluation among them
        does not count twice), plus the evaluations' share."""
        marks = self._marks[-(RECENT_STEPS + 1) :]
        spans = sorted(
            (t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(marks, marks[1:], strict=False)
        )
        share = self.eval_seconds / self.eval_every if self.eval_every else 0.0
        return spans[len(spans) // 2] + share

    def _fit(self, step: int, now: float, per_step: float) -> bool:
        """Cut the plan to the steps that fit before the deadline (never lengthen it)."""
        assert self.deadline.at is not None
        if self.state.seconds_per_step is None:
            self.state.seconds_per_step = per_step
        room = self.deadline.at - now - self.finish_seconds
        fits = step + max(0, math.floor(room / per_step)) if per_step > 0 else self.total
        new = max(step, min(self.total, fits))
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
