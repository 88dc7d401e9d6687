"""Prefect task `version`: push the data to the DVC remote and record the data version."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.data.stages import CollectedSnapshot, LabeledDataset
from aigc.data.version import configure_remote, push, record_version


@task(name="version")
def version(
    root: Path, params: Params, collected: CollectedSnapshot, labeled: LabeledDataset
) -> LabeledDataset:
    logger = get_run_logger()
    root = Path(root)
    if params.version.push:
        url = configure_remote(root, params.version.remote_name, params.version.remote_url)
        push(root, params.version.remote_name)
        logger.info("pushed to DVC remote %s (%s)", params.version.remote_name, url)
    entry, new = record_version(root, collected.snapshot.path.name, labeled.counts)
    logger.info("data version %s (%s)", entry.short, "new" if new else "unchanged")
    return replace(labeled, version=entry.version)
