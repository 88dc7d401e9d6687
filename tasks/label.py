"""Prefect task `label`: `dvc repro label` (labeling functions, label model, overrides, split)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.data.stages import LabeledDataset, labeled_dataset
from aigc.data.version import repro
from aigc.paths import ProjectPaths


@task(name="label")
def label(root: Path) -> LabeledDataset:
    logger = get_run_logger()
    for line in repro(Path(root), "label"):
        logger.info("dvc: %s", line)
    labeled = labeled_dataset(ProjectPaths.at(root))
    logger.info("label: splits %s", labeled.counts["splits"])
    logger.info("label: labels %s", labeled.counts["labels"])
    return labeled
