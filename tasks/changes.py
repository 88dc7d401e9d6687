"""Prefect task `check_changes`: is there anything new to train since the last run?"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.pipeline import training_key
from aigc.registry.registry import ModelVersion, find_by_key
from aigc.train.stage import tracking_settings


@task(name="check-changes")
def check_changes(
    root: Path, params: Params, data_version: str
) -> tuple[str, ModelVersion | None]:
    """(training key, the registered version already trained from it, if any)."""
    key = training_key(data_version, params)
    settings = tracking_settings(ProjectPaths.at(root), params)
    existing = find_by_key(settings, params.registry.model_name, key)
    logger = get_run_logger()
    if existing is None:
        logger.info("training key %s is new: data, code or params changed", key)
    else:
        state = "decided" if existing.decided else "registered but not yet decided"
        logger.info("training key %s is version %s (%s)", key, existing.version, state)
    return key, existing
