"""Prefect tasks of the image modality: image_collect, image_clean, image_label, image_version.

The same edges as text's tasks (collect, clean, label, version) around aigc.stages.image:
collect writes a raw snapshot and `dvc add`s it, clean and label run `dvc repro` (skipped
when nothing changed), version pushes and records the image data version.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.stages import image
from aigc.stages.clean import CleanedDataset
from aigc.stages.collect import CollectedSnapshot
from aigc.stages.label import LabeledDataset
from tasks.collect import log_collection


@task(name="image_collect")
def image_collect(root: Path, params: Params) -> CollectedSnapshot:
    collected = image.collect(ProjectPaths.at(root), params)
    log_collection(collected, "data/image/raw")
    return collected


@task(name="image_clean")
def image_clean(root: Path) -> CleanedDataset:
    cleaned = _repro(root, image.CLEAN_STAGE)
    get_run_logger().info(
        "image clean: %d images kept, %d quarantined %s",
        cleaned.records,
        cleaned.quarantined,
        cleaned.quarantined_by_rule,
    )
    return cleaned


@task(name="image_label")
def image_label(root: Path) -> LabeledDataset:
    labeled = _repro(root, image.LABEL_STAGE)
    get_run_logger().info(
        "image label: splits %s, classes %s", labeled.counts["splits"], labeled.counts["labels"]
    )
    return labeled


def _repro(root: Path, stage: str):
    """`dvc repro STAGE` (skipped when nothing changed), DVC's lines in the run's log."""
    reference, dvc_lines = image.run_in_dvc(ProjectPaths.at(root), stage)
    for line in dvc_lines:
        get_run_logger().info("dvc: %s", line)
    return reference


@task(name="image_version")
def image_version(
    root: Path, params: Params, collected: CollectedSnapshot, labeled: LabeledDataset
) -> image.ImageDataset:
    outcome = image.version(
        ProjectPaths.at(root), params, collected.snapshot.path.name, labeled.counts
    )
    state = "new" if outcome.new else "unchanged"
    get_run_logger().info("image data version %s (%s)", outcome.dataset.version[:12], state)
    return outcome.dataset
