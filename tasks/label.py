"""Prefect task `label`: the modality's DVC label stage (`dvc repro label`: labeling functions,
label model, overrides, split; `image_label`: the source's classes, overrides, split)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.stages.label import LabeledDataset, run_in_dvc


@task(name="label", task_run_name="{modality}-label")
def label(root: Path, modality: str = "text") -> LabeledDataset:
    logger = get_run_logger()
    labeled, dvc_lines = run_in_dvc(ProjectPaths.at(root), get_modality(modality))
    for line in dvc_lines:
        logger.info("dvc: %s", line)
    logger.info("%s label: splits %s", modality, labeled.counts["splits"])
    logger.info("%s label: labels %s", modality, labeled.counts["labels"])
    return labeled
