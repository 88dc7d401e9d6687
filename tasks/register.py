"""Prefect task `register`: the trained model becomes a new version with alias `challenger`."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.evaluate import HEADLINE_METRICS
from aigc.paths import ProjectPaths
from aigc.registry.registry import ModelVersion, register_challenger
from aigc.tracking import git_commit
from aigc.train.stage import TrainedModel, tracking_settings


@task(name="register")
def register(root: Path, params: Params, trained: TrainedModel, key: str) -> ModelVersion:
    paths = ProjectPaths.at(root)
    version = register_challenger(
        tracking_settings(paths, params),
        params.registry.model_name,
        trained.model_uri,
        key,
        tags={
            "aigc.data_version": trained.data_version,
            "aigc.git_commit": git_commit(paths.root),
            "aigc.params_hash": params.section_hash("train", "evaluate"),
            "aigc.run_id": trained.run_id,
        },
        metrics={
            name: trained.metrics[name] for name in HEADLINE_METRICS if name in trained.metrics
        },
    )
    get_run_logger().info("registered %s version %s as challenger", version.name, version.version)
    return version
