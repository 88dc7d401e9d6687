"""Prefect task `register`: the trained model becomes a new version with alias `challenger`."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.registry.registry import ModelVersion
from aigc.stages.evaluate import Evaluation
from aigc.stages.register import register as register_stage
from aigc.stages.train import TrainedModel


@task(name="register", task_run_name="{modality}-register")
def register(
    root: Path,
    params: Params,
    trained: TrainedModel,
    evaluation: Evaluation,
    key: str,
    modality: str = "text",
) -> ModelVersion:
    version = register_stage(
        ProjectPaths.at(root), params, trained, evaluation, key, get_modality(modality)
    )
    get_run_logger().info("registered %s version %s as challenger", version.name, version.version)
    return version
