"""Training progress for people watching: which budget will stop training, and when to say so.

    budget = stopping_budget(params.train.loop, tokens_per_step(params.train), step, seconds)
    log = ProgressLog(params.train, emit=logger.info)        # an `on_progress` callback
    trained = train(paths, params, dataset, on_progress=log)
    stopped_by(params.train.loop, tokens_per_step(params.train), trained.steps)  # "max_steps"

Training stops at the first of max_steps, max_tokens and max_minutes (aigc.train.loop). The
step and token budgets give an exact step count; the time budget gives one only once steps
have a rate, so that total is an estimate that follows the measured rate. The CLI's progress
bar and the Prefect task's log lines both take their total from `stopping_budget`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from aigc.config import ImageTrainParams, LoopParams, TrainParams


@dataclass(frozen=True)
class Budget:
    steps: int | None  # the step training stops at; None while a time budget has no rate yet
    limit: str  # "max_steps" | "max_tokens" | "max_minutes": the budget that stops it first
    estimated: bool  # True when `steps` comes from the time budget and the rate so far

    @property
    def total(self) -> str:
        if self.steps is None:
            return "?"
        return f"~{self.steps}" if self.estimated else str(self.steps)


def tokens_per_step(train: TrainParams | ImageTrainParams) -> int:
    """Input tokens (or images: one each) one worker trains on per optimizer step (batches
    are always full)."""
    per_example = getattr(train.model, "block_size", 1)
    return train.batch_size * per_example * train.loop.grad_accumulation


def stopping_budget(
    loop: LoopParams, tokens_per_step: int, step: int = 0, elapsed_seconds: float = 0.0
) -> Budget:
    """The budget that stops training first and the step it stops at, as known at `step`."""
    candidates: list[Budget] = []  # in the loop's order of checks, which also breaks ties
    if loop.max_steps is not None:
        candidates.append(Budget(loop.max_steps, "max_steps", False))
    if loop.max_tokens is not None:  # the loop counts each worker's own tokens
        candidates.append(
            Budget(math.ceil(loop.max_tokens / tokens_per_step), "max_tokens", False)
        )
    if loop.max_minutes is not None and step > 0 and elapsed_seconds > 0:
        at_rate = math.ceil(60 * loop.max_minutes * step / elapsed_seconds)
        candidates.append(Budget(max(step, at_rate), "max_minutes", True))
    if not candidates:  # only a time budget, and no step timed yet
        return Budget(None, "max_minutes", True)
    return min(candidates, key=lambda budget: budget.steps)


def stopped_by(loop: LoopParams, tokens_per_step: int, steps: int) -> str:
    """The budget that ended a run of `steps` steps: an exact one it reached, else the time."""
    exact = stopping_budget(loop.model_copy(update={"max_minutes": None}), tokens_per_step)
    return exact.limit if exact.steps is not None and steps >= exact.steps else "max_minutes"


class BudgetEstimate:
    """`stopping_budget` as progress arrives: the rate comes from the last item that has a
    time (the final summary has none), and the estimate never falls below the step reached."""

    def __init__(self, loop: LoopParams, tokens_per_step: int) -> None:
        self.loop, self.tokens_per_step = loop, tokens_per_step
        self.timed_step, self.elapsed_seconds = 0, 0.0

    def update(self, metrics: Mapping[str, float]) -> Budget:
        step = int(metrics["step"])
        if "elapsed_seconds" in metrics:
            self.timed_step, self.elapsed_seconds = step, metrics["elapsed_seconds"]
        budget = stopping_budget(
            self.loop, self.tokens_per_step, self.timed_step, self.elapsed_seconds
        )
        if budget.steps is not None and budget.steps < step:
            return replace(budget, steps=step)
        return budget


def describe_budgets(loop: LoopParams, tokens_per_step: int) -> str:
    """Every budget set, in words: "30 steps (max_steps) or 1.6 minutes (max_minutes)"."""
    parts = []
    if loop.max_steps is not None:
        parts.append(f"{loop.max_steps} steps (max_steps)")
    if loop.max_tokens is not None:
        steps = math.ceil(loop.max_tokens / tokens_per_step)
        parts.append(f"{loop.max_tokens:,} tokens per worker = {steps} steps (max_tokens)")
    if loop.max_minutes is not None:
        parts.append(f"{loop.max_minutes:g} minutes (max_minutes)")
    return " or ".join(parts) + (", whichever comes first" if len(parts) > 1 else "")


def progress_line(metrics: Mapping[str, float], budget: Budget) -> str:
    """One log line: "train step 12/30 (40%, max_steps) loss 3.214 lr 2.9e-03 1,234 tok/s"."""
    step = int(metrics["step"])
    share = f"{step / budget.steps:.0%}, " if budget.steps else ""
    line = f"train step {step}/{budget.total} ({share}{budget.limit})"
    if "train_loss" in metrics:
        line += f" loss {metrics['train_loss']:.3f}"
    if "val_loss" in metrics:
        line += f" val loss {metrics['val_loss']:.3f}"
    if "lr" in metrics:
        line += f" lr {metrics['lr']:.2e}"
    return line + throughput(metrics)


def throughput(metrics: Mapping[str, float]) -> str:
    """ " 1,234 tok/s" (text) or " 532 img/s" (images); empty before there is a rate."""
    for key, unit in (("tokens_per_second", "tok/s"), ("images_per_second", "img/s")):
        if key in metrics:
            return f" {metrics[key]:,.0f} {unit}"
    return ""


class ProgressLog:
    """An `on_progress` callback for logs, where no bar can be drawn: it says which budgets
    apply, then emits a line at each tenth of the budget, and at least every
    `max_silence_seconds` (a time-budget total moves with the rate, tenths may come slowly)."""

    def __init__(
        self,
        train: TrainParams | ImageTrainParams,
        emit: Callable[[str], None],
        parts: int = 10,
        max_silence_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.budget = BudgetEstimate(train.loop, tokens_per_step(train))
        self.emit = emit
        self.parts = parts
        self.max_silence_seconds = max_silence_seconds
        self.clock = clock
        self.last_part, self.last_step, self.last_emitted = -1, 0, clock()
        emit(f"training until {describe_budgets(train.loop, self.budget.tokens_per_step)}")

    def __call__(self, metrics: Mapping[str, float]) -> None:
        step = int(metrics["step"])
        budget = self.budget.update(metrics)
        part = self.parts * step // budget.steps if budget.steps else self.last_part
        now = self.clock()
        if step <= self.last_step:  # the final summary repeats the last step
            return
        if part > self.last_part or now - self.last_emitted >= self.max_silence_seconds:
            self.last_part, self.last_step, self.last_emitted = (
                max(part, self.last_part),
                step,
                now,
            )
            self.emit(progress_line(metrics, budget))
