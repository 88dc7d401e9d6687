"""Prefect task `train`: train a challenger on Ray, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.stages.train import TrainedModel
from aigc.stages.train import train as train_stage
from aigc.stages.version import Dataset


@task(name="train")
def train(root: Path, params: Params, dataset: Dataset, key: str) -> TrainedModel:
    trained = train_stage(
        ProjectPaths.at(root), params, dataset, extra_tags={"aigc.training_key": key}
    )
    get_run_logger().info(
        "trained run %s: %d steps in %.0fs, train loss %.3f",
        trained.run_id,
        trained.steps,
        trained.seconds,
        trained.metrics.get("train_loss", float("nan")),
    )
    return trained
