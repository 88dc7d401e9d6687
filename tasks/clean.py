"""Prefect task `clean`: `dvc repro clean`, skipped when raw, code and params are unchanged."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.data.stages import CleanedDataset, cleaned_dataset
from aigc.data.version import repro
from aigc.paths import ProjectPaths


@task(name="clean")
def clean(root: Path) -> CleanedDataset:
    logger = get_run_logger()
    for line in repro(Path(root), "clean"):
        logger.info("dvc: %s", line)
    cleaned = cleaned_dataset(ProjectPaths.at(root))
    logger.info(
        "clean: %d records kept, %d quarantined %s",
        cleaned.records,
        cleaned.quarantined,
        cleaned.quarantined_by_rule,
    )
    return cleaned
