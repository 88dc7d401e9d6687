"""Prefect task `version`: push the labeled dataset to the DVC remote, record the data version."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.stages.collect import CollectedSnapshot
from aigc.stages.label import LabeledDataset
from aigc.stages.version import Dataset
from aigc.stages.version import version as version_stage


@task(name="version", task_run_name="{modality}-version")
def version(
    root: Path,
    params: Params,
    collected: CollectedSnapshot,
    labeled: LabeledDataset,
    modality: str = "text",
) -> Dataset:
    """The modality's dataset at its data version."""
    logger = get_run_logger()
    outcome = version_stage(
        ProjectPaths.at(root),
        params,
        get_modality(modality),
        collected.snapshot.path.name,
        labeled.counts,
    )
    if outcome.remote:
        logger.info("pushed to DVC remote %s (%s)", params.version.remote_name, outcome.remote)
    state = "new" if outcome.new else "unchanged"
    logger.info("%s data version %s (%s)", modality, outcome.dataset.version[:12], state)
    return outcome.dataset
