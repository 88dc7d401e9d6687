"""Prefect task `clean`: `dvc repro clean`, skipped when raw, code and params are unchanged."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.paths import ProjectPaths
from aigc.stages.clean import CleanedDataset, run_in_dvc


@task(name="clean")
def clean(root: Path) -> CleanedDataset:
    logger = get_run_logger()
    cleaned, dvc_lines = run_in_dvc(ProjectPaths.at(root))
    for line in dvc_lines:
        logger.info("dvc: %s", line)
    logger.info(
        "clean: %d records kept, %d quarantined %s",
        cleaned.records,
        cleaned.quarantined,
        cleaned.quarantined_by_rule,
    )
    return cleaned
