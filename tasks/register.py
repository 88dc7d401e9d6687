"""Prefect task `register`: the trained model becomes a new version with alias `challenger`."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.registry.registry import ModelVersion, register_challenger
from aigc.tracking import git_commit
from aigc.train.stage import TrainedModel, tracking_settings

TAGGED_METRICS = (
    "test_bits_per_character",
    "test_perplexity",
    "unigram_bits_per_character",
    "bleu",
    "chrf",
    "rougeL",
    "distinct_1",
    "distinct_2",
    "label_control_accuracy",
    "label_control_unconditioned_accuracy",
)


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
            name: trained.metrics[name] for name in TAGGED_METRICS if name in trained.metrics
        },
    )
    get_run_logger().info("registered %s version %s as challenger", version.name, version.version)
    return version
