"""Prefect task `label`: `dvc repro label` (labeling functions, label model, overrides, split)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.paths import ProjectPaths
from aigc.stages.label import LabeledDataset, run_in_dvc


@task(name="label")
def label(root: Path) -> LabeledDataset:
    logger = get_run_logger()
    labeled, dvc_lines = run_in_dvc(ProjectPaths.at(root))
    for line in dvc_lines:
        logger.info("dvc: %s", line)
    logger.info("label: splits %s", labeled.counts["splits"])
    logger.info("label: labels %s", labeled.counts["labels"])
    return labeled
