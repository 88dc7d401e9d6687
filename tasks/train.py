"""Prefect task `train`: train a challenger on Ray, tracked in MLflow, progress in the log."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.stages.train import TrainedModel
from aigc.stages.train import train as train_stage
from aigc.stages.version import Dataset
from aigc.train.progress import ProgressLog, stopped_by, tokens_per_step


@task(name="train", task_run_name="{modality}-train")
def train(
    root: Path, params: Params, dataset: Dataset, key: str, modality: str = "text"
) -> TrainedModel:
    logger = get_run_logger()
    chosen = get_modality(modality)
    settings = chosen.train_section(params)
    trained = train_stage(
        ProjectPaths.at(root),
        params,
        dataset,
        # called from the thread that drains rank 0's queue: the logger is bound here
        on_progress=ProgressLog(settings, logger.info),
        extra_tags={"aigc.training_key": key},
    )
    logger.info(
        "trained %s run %s: %d steps (stopped by %s) in %.0fs, train loss %.3f",
        modality,
        trained.run_id,
        trained.steps,
        stopped_by(settings.loop, tokens_per_step(settings), trained.steps),
        trained.seconds,
        trained.metrics.get("train_loss", float("nan")),
    )
    return trained
