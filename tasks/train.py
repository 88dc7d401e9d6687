"""Prefect task `train`: train and evaluate a challenger on Ray, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.train.stage import TrainedModel, train_stage


@task(name="train")
def train(root: Path, params: Params, key: str) -> TrainedModel:
    logger = get_run_logger()
    trained = train_stage(ProjectPaths.at(root), params, extra_tags={"aigc.training_key": key})
    logger.info(
        "trained run %s in %.0fs: test bits/char %.3f (unigram %.3f)",
        trained.run_id,
        trained.seconds,
        trained.metrics["test_bits_per_character"],
        trained.metrics["unigram_bits_per_character"],
    )
    return trained
