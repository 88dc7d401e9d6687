"""aigc.train.progress: the budget that stops training first, and the log lines about it."""

from __future__ import annotations

from aigc.config import LoopParams, TrainParams
from aigc.train.progress import (
    Budget,
    BudgetEstimate,
    ProgressLog,
    describe_budgets,
    progress_line,
    stopped_by,
    stopping_budget,
    tokens_per_step,
)


def loop(**budgets) -> LoopParams:
    return LoopParams(**({"max_steps": None, "max_minutes": None} | budgets))


def test_step_and_token_budgets_are_exact_and_the_smaller_stops_first():
    assert stopping_budget(loop(max_steps=30), 256) == Budget(30, "max_steps", False)
    # 10,000 tokens at 256 per step: the 40th step reaches them
    assert stopping_budget(loop(max_tokens=10_000), 256) == Budget(40, "max_tokens", False)
    both = loop(max_steps=30, max_tokens=5_000)
    assert stopping_budget(both, 256) == Budget(20, "max_tokens", False)


def test_a_time_budget_is_estimated_from_the_rate_so_far():
    minutes = loop(max_minutes=1.6)  # 96 s
    assert stopping_budget(minutes, 256) == Budget(None, "max_minutes", True)
    assert stopping_budget(minutes, 256, step=50, elapsed_seconds=10) == Budget(
        480, "max_minutes", True
    )
    # the default budgets: 2000 steps or 1.6 minutes; at 5 steps/s the minutes stop first,
    # at 50 steps/s the steps do
    defaults = LoopParams()
    assert stopping_budget(defaults, 256, 50, 10).limit == "max_minutes"
    assert stopping_budget(defaults, 256, 500, 10) == Budget(2000, "max_steps", False)
    # past the time budget the estimate is never below the step reached
    assert stopping_budget(minutes, 256, step=100, elapsed_seconds=200).steps == 100


def test_an_estimate_takes_its_rate_from_timed_items_and_never_falls_below_the_step():
    estimate = BudgetEstimate(loop(max_minutes=1.0), 256)
    assert estimate.update({"step": 0}) == Budget(None, "max_minutes", True)
    assert estimate.update({"step": 50, "elapsed_seconds": 10}).steps == 300
    # the final summary has no time: its step does not inflate the rate of the last item
    assert estimate.update({"step": 55}).steps == 300
    assert estimate.update({"step": 301}).steps == 301


def test_stopped_by_names_the_exact_budget_reached_or_else_the_time():
    both = loop(max_steps=30, max_tokens=10_000, max_minutes=1.0)  # tokens: 40 steps
    assert stopped_by(both, 256, 30) == "max_steps"
    assert stopped_by(both, 256, 12) == "max_minutes"
    assert stopped_by(loop(max_tokens=10_000), 256, 40) == "max_tokens"
    assert stopped_by(loop(max_minutes=1.0), 256, 500) == "max_minutes"


def test_tokens_per_step_counts_full_batches_and_accumulation():
    train = TrainParams.model_validate(
        {"batch_size": 8, "model": {"block_size": 32}, "loop": {"grad_accumulation": 2}}
    )
    assert tokens_per_step(train) == 8 * 32 * 2


def test_descriptions_name_every_budget_and_say_which_stops():
    text = describe_budgets(LoopParams(max_steps=2000, max_minutes=1.6, max_tokens=51_200), 256)
    assert text == (
        "2000 steps (max_steps) or 51,200 tokens per worker = 200 steps (max_tokens) or "
        "1.6 minutes (max_minutes), whichever comes first"
    )
    line = progress_line(
        {"step": 120, "train_loss": 3.2141, "lr": 0.0029, "tokens_per_second": 12345.6},
        Budget(480, "max_minutes", True),
    )
    assert line == "train step 120/~480 (25%, max_minutes) loss 3.214 lr 2.90e-03 12,346 tok/s"


def test_progress_log_speaks_at_each_tenth_and_after_a_silence():
    lines: list[str] = []
    now = [0.0]
    train = TrainParams.model_validate({"loop": {"max_steps": 100, "max_minutes": None}})
    log = ProgressLog(train, lines.append, max_silence_seconds=60, clock=lambda: now[0])
    assert lines == ["training until 100 steps (max_steps)"]
    for step in range(1, 101):
        log({"step": step, "elapsed_seconds": step / 10, "train_loss": 2.0})
    log({"step": 100, "train_loss": 1.9, "val_loss": 2.0})  # the final summary repeats
    steps = [line.split()[2] for line in lines[1:]]
    assert steps == [f"{step}/100" for step in (1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100)]

    slow = TrainParams.model_validate({"loop": {"max_steps": 10_000, "max_minutes": None}})
    lines.clear()
    log = ProgressLog(slow, lines.append, max_silence_seconds=60, clock=lambda: now[0])
    for step in range(1, 5):
        now[0] += 45
        log({"step": step, "train_loss": 2.0})
    assert [line.split()[2] for line in lines[1:]] == ["1/10000", "3/10000"]
