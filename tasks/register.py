"""Prefect task `register`: the trained model becomes a new version with alias `challenger`."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Modality, Params
from aigc.paths import ProjectPaths
from aigc.registry.registry import ModelVersion
from aigc.stages.evaluate import Evaluation
from aigc.stages.register import register as register_stage
from aigc.stages.train import TrainedModel


@task(name="register")
def register(
    root: Path,
    params: Params,
    trained: TrainedModel,
    evaluation: Evaluation,
    key: str,
    modality: Modality = "text",
) -> ModelVersion:
    version = register_stage(ProjectPaths.at(root), params, trained, evaluation, key, modality)
    get_run_logger().info("registered %s version %s as challenger", version.name, version.version)
    return version
