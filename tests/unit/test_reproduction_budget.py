"""What a reproduction trains and says it trains: the recorded steps, not this clone's budget.

The defaults budget 2000 steps or 1.6 minutes; the original run trained 243 steps (its tag
`aigc.steps`). A reproduction trains, announces and counts exactly those 243 steps."""

from __future__ import annotations

import io

from rich.console import Console

import cli.output
from aigc.config import Params
from aigc.reproduce import Reproduction, reproduction_params
from aigc.train.progress import Budget, describe_budgets, stopping_budget, tokens_per_step

RUN_ID = "0123456789abcdef0123456789abcdef"


def reproduction_of(tags: dict[str, str], tmp_path) -> Reproduction:
    """A reproduction of a run recorded with the default params and `tags`."""
    recorded = Params()
    made = reproduction_params(
        recorded, int(tags["aigc.steps"]), tmp_path, modality=tags.get("aigc.modality", "text")
    )
    return Reproduction(RUN_ID, tags, {}, made, tmp_path)


def test_a_reproduction_trains_announces_and_counts_the_recorded_steps(tmp_path):
    here = Params().train.loop
    assert (here.max_steps, here.max_minutes) == (2000, 1.6), "the budget it must not follow"
    reproduction = reproduction_of({"aigc.data_version": "d" * 32, "aigc.steps": "243"}, tmp_path)
    loop = reproduction.train.loop
    assert (loop.max_steps, loop.max_minutes, loop.max_tokens) == (243, None, None)
    assert loop.lr_decay_steps == 2000, "the schedule keeps the original horizon"
    budget = stopping_budget(loop, tokens_per_step(reproduction.train))
    assert budget == Budget(243, "max_steps", False)
    assert describe_budgets(loop, tokens_per_step(reproduction.train)) == "243 steps (max_steps)"
    assert reproduction.announcement == (
        "reproducing run 0123456789ab: training the recorded 243 steps (the original run's "
        "steps; a time budget is not reproducible)"
    )


def test_an_image_reproduction_trains_the_image_section_for_the_recorded_steps(tmp_path):
    tags = {"aigc.data_version": "d" * 32, "aigc.steps": "77", "aigc.modality": "image"}
    reproduction = reproduction_of(tags, tmp_path)
    assert reproduction.train == reproduction.params.image.train
    budget = stopping_budget(reproduction.train.loop, tokens_per_step(reproduction.train))
    assert budget == Budget(77, "max_steps", False)


def test_the_cli_bar_of_a_reproduction_says_and_counts_the_recorded_steps(tmp_path, monkeypatch):
    printed = io.StringIO()
    monkeypatch.setattr(cli.output, "console", Console(file=printed, width=200))
    reproduction = reproduction_of({"aigc.data_version": "d" * 32, "aigc.steps": "243"}, tmp_path)
    progress = cli.output._training_progress(reproduction.train, reproduction.announcement)
    with progress as on_progress:
        for step in (1, 120):
            on_progress({"step": step, "train_loss": 2.0, "lr": 1e-3, "elapsed_seconds": step})
    lines = printed.getvalue().splitlines()
    assert lines[0] == reproduction.announcement
    assert "120/243" in lines[-1] and "max_steps" in lines[-1], lines[-1]
    assert "2000" not in printed.getvalue() and "minutes" not in printed.getvalue()
