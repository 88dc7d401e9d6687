"""Prefect task `clean`: the modality's DVC clean stage (`dvc repro clean`, `image_clean`),
skipped when raw, code and params are unchanged."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.stages.clean import CleanedDataset, run_in_dvc


@task(name="clean", task_run_name="{modality}-clean")
def clean(root: Path, modality: str = "text") -> CleanedDataset:
    logger = get_run_logger()
    cleaned, dvc_lines = run_in_dvc(ProjectPaths.at(root), get_modality(modality))
    for line in dvc_lines:
        logger.info("dvc: %s", line)
    logger.info(
        "%s clean: %d records kept, %d quarantined %s",
        modality,
        cleaned.records,
        cleaned.quarantined,
        cleaned.quarantined_by_rule,
    )
    return cleaned
