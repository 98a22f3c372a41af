"""The time budget: steps planned from (fake) step times, the schedule ending at the planned
end, the deadline as the last resort, and a resumed run keeping its plan."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from finetune import train as train_module
from finetune.budget import (
    BUDGET,
    EARLY_STOP,
    EPOCHS,
    FINAL_PLAN_STEPS,
    FINISH_MARGIN,
    MAX_STEPS,
    MEASURE_STEPS,
    Deadline,
    StepPlan,
    budget_seconds,
)
from finetune.config import FinetuneConfig
from finetune.schedule import lr_schedule
from finetune.train import Interrupted, run


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def steps(plan: StepPlan, clock: FakeClock, first: int, last: int, seconds: float) -> None:
    for step in range(first, last + 1):
        clock.now += seconds
        plan.step_done(step)


def test_the_budget_is_25_minutes_on_a_cpu_none_on_a_gpu_and_0_means_none() -> None:
    assert budget_seconds(None, "cpu") == 25 * 60
    assert budget_seconds(None, "cuda") is None and budget_seconds(None, "mps") is None
    assert budget_seconds(10, "cuda") == 600 and budget_seconds(0, "cpu") is None


def test_the_plan_fits_the_steps_and_the_final_measurements_into_the_budget() -> None:
    clock = FakeClock()
    deadline = Deadline(600.0, clock)
    clock.now += 100  # data preparation
    plan = StepPlan(1000, EPOCHS, deadline, eval_every=10)
    plan.measured_start(50.0, 5.0)  # the base model's figures; one held-out loss of them
    clock.now += 50
    steps(plan, clock, 1, MEASURE_STEPS - 1, 10.0)
    assert plan.total == 1000 and not plan.state.planned  # not measured yet
    steps(plan, clock, MEASURE_STEPS, MEASURE_STEPS, 10.0)
    per_step = 10.0 + 5.0 / 10  # a step, and its share of the periodic evaluations
    finish = 50.0 * FINISH_MARGIN
    assert deadline.at is not None
    left = deadline.at - clock.now - finish
    assert plan.state.planned and plan.state.seconds_per_step == pytest.approx(per_step)
    # As many steps as fit, not one more.
    assert (
        (plan.total - MEASURE_STEPS) * per_step
        <= left
        < (plan.total + 1 - MEASURE_STEPS) * per_step
    )
    assert plan.stop_reason(plan.total, stopped_early=False) == BUDGET
    assert plan.stop_reason(3, stopped_early=True) == EARLY_STOP


def test_the_plan_never_runs_past_the_epochs_or_max_steps() -> None:
    clock = FakeClock()
    plan = StepPlan(20, MAX_STEPS, Deadline(3600.0, clock))
    steps(plan, clock, 1, 20, 1.0)
    assert plan.total == 20 and plan.stop_reason(20, stopped_early=False) == MAX_STEPS


def test_without_a_budget_the_plan_is_the_epochs() -> None:
    clock = FakeClock()
    plan = StepPlan(50, EPOCHS, Deadline(None, clock))
    steps(plan, clock, 1, 10, 1000.0)
    assert plan.total == 50 and not plan.out_of_time(10)


def test_the_final_plan_gives_back_what_the_first_slow_steps_took_and_no_more() -> None:
    clock = FakeClock()
    deadline = Deadline(1000.0, clock)
    plan = StepPlan(10_000, EPOCHS, deadline)
    steps(plan, clock, 1, MEASURE_STEPS, 20.0)  # warming up, long rows: 20 s a step
    provisional = plan.total
    assert provisional == MEASURE_STEPS + (1000 - 4 * 20) // 20
    steps(plan, clock, MEASURE_STEPS + 1, FINAL_PLAN_STEPS - 1, 5.0)
    assert plan.total == provisional  # between the two plans it only shrinks
    steps(plan, clock, FINAL_PLAN_STEPS, FINAL_PLAN_STEPS, 5.0)
    # The final plan grows, from the mean of the 19 steps after the first one.
    per_step = (3 * 20.0 + 16 * 5.0) / 19
    assert plan.total > provisional and plan.state.seconds_per_step == pytest.approx(per_step)
    assert deadline.at is not None
    assert (plan.total - FINAL_PLAN_STEPS) * per_step <= deadline.at - clock.now
    grown = plan.total
    steps(plan, clock, FINAL_PLAN_STEPS + 1, FINAL_PLAN_STEPS + 30, 1.0)
    assert plan.total == grown  # faster still: the plan stays (the rate must not rise)
    capped = StepPlan(30, EPOCHS, Deadline(1000.0, clock))
    steps(capped, clock, 1, FINAL_PLAN_STEPS, 1.0)
    assert capped.total == 30  # never past what the epochs ask for


def test_a_burst_of_slow_steps_costs_the_plan_little_and_a_slower_machine_cuts_it() -> None:
    clock = FakeClock()
    deadline = Deadline(2000.0, clock)
    plan = StepPlan(10_000, EPOCHS, deadline, eval_every=5)
    plan.measured_start(0.0, 10.0)  # an evaluation every 5 steps, 10 s each: 2 s a step
    for step in range(1, 61):  # 10 s a step, and the evaluations after every fifth
        clock.now += 10.0 + (10.0 if step > 1 and (step - 1) % 5 == 0 else 0.0)
        plan.step_done(step)
    planned = plan.total
    # What fits at 12 s a step (a step, and its share of the evaluations), to a step or two.
    assert planned == pytest.approx(60 + (2000 - (clock.now - 1000.0)) / 12.0, abs=2)
    steps(plan, clock, 61, 65, 30.0)  # five slow steps (other work for a minute and more)
    after_burst = plan.total
    # Three quarters of the steps left are kept (the 100 s the burst took are a twelfth of
    # their time; a median of the last five steps, 32 s, kept 37% of them).
    assert after_burst - 65 >= 0.75 * (planned - 65)
    steps(plan, clock, 66, 120, 30.0)  # it stays slower: now the plan fits the new pace
    assert deadline.at is not None
    assert plan.total < after_burst
    assert (plan.total - 120) * 32.0 <= deadline.at - clock.now


def test_the_deadline_ends_the_run_when_no_plan_foresaw_the_slowdown() -> None:
    clock = FakeClock()
    plan = StepPlan(100, EPOCHS, Deadline(100.0, clock))
    plan.measured_start(10.0, 1.0)
    clock.now += 80  # 20 s left, 12.5 of them for the final measurements
    assert not plan.out_of_time(3)
    clock.now += 8
    assert plan.out_of_time(3) and plan.total == 3


def test_the_learning_rate_reaches_its_floor_at_the_planned_end() -> None:
    clock = FakeClock()
    plan = StepPlan(1000, EPOCHS, Deadline(400.0, clock))
    factor = lr_schedule(lambda: plan.total, 0.05, 0.1)
    assert factor(100) > 0.9  # as planned for the epochs: still near the peak
    steps(plan, clock, 1, MEASURE_STEPS, 10.0)
    assert 30 < plan.total < 1000
    values = [factor(s) for s in range(plan.total + 1)]
    assert values[-1] == pytest.approx(0.1)  # the floor, at the planned end
    warmup = int(plan.total * 0.05)
    assert all(a >= b for a, b in zip(values[warmup:], values[warmup + 1 :], strict=False))


def test_a_restored_plan_is_kept_and_max_steps_can_only_shorten_it() -> None:
    clock = FakeClock()
    plan = StepPlan(1000, EPOCHS, Deadline(400.0, clock))
    steps(plan, clock, 1, MEASURE_STEPS, 10.0)
    saved = json.loads(json.dumps(plan.to_dict()))
    again = StepPlan(1000, EPOCHS, Deadline(10_000.0, FakeClock()))
    again.restore(saved)
    steps(again, clock, MEASURE_STEPS + 1, 20, 0.01)  # much faster now: kept all the same
    assert again.total == plan.total and again.kept
    shorter = StepPlan(10, MAX_STEPS, Deadline(10_000.0, FakeClock()))
    shorter.restore(saved)
    assert shorter.total == 10 and shorter.limit == 10


# --- end to end on the tiny model: a fake clock, every step 10 s ------------------------------

SMALL = {
    "seq_len": 64,
    "batch_size": 2,
    "lr": 1e-2,
    "max_steps": 50,
    "eval_every": 0,
    "patience": 0,
    "match_samples": 0,
    "checkpoint_every": 2,
    "warmup_fraction": 0.0,
    "min_lr_fraction": 0.1,
}


class TimedSteps:
    """Each training step takes `seconds` by `clock`; records the learning rate each step
    used, and sends SIGINT (Ctrl-C: the loop stops after that step) after the steps asked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, clock: FakeClock, seconds: float) -> None:
        self.rates: list[float] = []
        self.sigint_at: set[int] = set()
        real_step = train_module.Trainer.step

        def step(trainer: Any, order: Any) -> float:
            self.rates.append(trainer.optimizer.param_groups[0]["lr"])
            loss = real_step(trainer, order)
            clock.now += seconds
            if trainer.state.step in self.sigint_at:
                os.kill(os.getpid(), signal.SIGINT)
            return loss

        monkeypatch.setattr(train_module.Trainer, "step", step)


def config(repo: Path, out: Path, model: Path, **changes: Any) -> FinetuneConfig:
    return FinetuneConfig.from_dict(
        SMALL | {"repo": str(repo), "out": str(out), "model": str(model)} | changes
    )


@pytest.mark.usefixtures("one_thread")
def test_a_run_plans_its_steps_to_the_budget_and_ends_at_the_floor(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    rates = TimedSteps(monkeypatch, clock, 10.0).rates
    cfg = config(fixture_repo, tmp_path / "lora", tiny_model_dir, time_budget_minutes=1)
    summary = run(cfg, progress=False, clock=clock)
    assert summary is not None
    # 60 s, nothing else taking time by this clock: 4 steps measured, then 2 more fit.
    assert summary["steps"] == summary["total_steps"] == 6 and summary["step_limit"] == 50
    assert summary["stop_reason"] == BUDGET and summary["time_budget_minutes"] == 1
    assert summary["wall_seconds"] == 60.0
    assert len(rates) == 6 and rates[-1] < rates[0]
    # Planned for 50 steps until the plan, made after step 4, says 6: the floor at step 6.
    for_50, for_6 = lr_schedule(50, 0.0, 0.1), lr_schedule(6, 0.0, 0.1)
    assert rates == pytest.approx(
        [1e-2 * for_50(s) for s in range(4)] + [1e-2 * for_6(s) for s in (4, 5)]
    )
    assert for_6(6) == pytest.approx(0.1)
    meta = json.loads((tmp_path / "lora" / "codetailor.json").read_text())
    assert meta["training"]["stop_reason"] == BUDGET and meta["training"]["total_steps"] == 6


@pytest.mark.usefixtures("one_thread")
def test_a_resumed_run_keeps_the_plan_it_started_with(
    fixture_repo: Path, tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    TimedSteps(monkeypatch, clock, 10.0).sigint_at.add(5)
    cfg = config(fixture_repo, tmp_path / "lora", tiny_model_dir, time_budget_minutes=1)
    with pytest.raises(Interrupted, match="step 5 of 6"):
        run(cfg, progress=False, clock=clock)
    # Resumed on a machine 100 times faster with a budget 10 times larger: the plan holds.
    fast = FakeClock()
    TimedSteps(monkeypatch, fast, 0.1)
    summary = run(cfg | {"time_budget_minutes": 10}, resume=True, progress=False, clock=fast)
    assert summary is not None and summary["steps"] == summary["total_steps"] == 6
    assert summary["stop_reason"] == BUDGET
