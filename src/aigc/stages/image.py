"""The image stages' edges: collect, clean, label and version for the image modality.

    collected = collect(paths, params)          # data/image/raw/snapshot-*.parquet, `dvc add`ed
    cleaned = clean(paths, params)              # DVC stage `image_clean` (`aigc data clean
    labeled = label(paths, params)              #   --modality image`), `image_label` likewise
    dataset = version(paths, params, collected.snapshot.path.name, labeled.counts)
    cleaned, dvc_lines = run_in_dvc(paths, "image_clean")   # what the Prefect tasks run

Each reads its params section (`image.*`), calls the core in aigc.image and writes under
data/image/: clean/{records,quarantine}.parquet, labeled/images.parquet (the data version,
read with aigc.image.dataset.read_labeled) and reports/{clean,label}{,_metrics}.json. The
references they return are text's (CollectedSnapshot, CleanedDataset, LabeledDataset) and
`ImageDataset`. The image data version is the DVC hash of data/image/labeled, recorded in
data/image/versions.jsonl beside text's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.data.collect import latest_snapshot, read_snapshot, write_snapshot
from aigc.data.label import read_overrides
from aigc.data.version import IMAGE, current_version, repro, track_raw
from aigc.errors import UserError
from aigc.image.clean import clean_images
from aigc.image.collect import collect_images
from aigc.image.dataset import LABELED_FILE, ImageSplit, read_labeled
from aigc.image.label import label_images
from aigc.paths import ProjectPaths
from aigc.stages.clean import CleanedDataset, clean_metrics, cleaned_dataset, write_json
from aigc.stages.collect import CollectedSnapshot
from aigc.stages.label import LabeledDataset, labeled_dataset
from aigc.stages.version import VersionOutcome, publish

CLEAN_STAGE, LABEL_STAGE = "image_clean", IMAGE.label_stage


@dataclass(frozen=True)
class ImagePaths:
    """Where the image modality keeps its data: data/image/{raw,clean,labeled,reports}."""

    root: Path
    raw: Path
    clean: Path
    labeled: Path
    reports: Path

    @classmethod
    def of(cls, paths: ProjectPaths) -> ImagePaths:
        base = paths.image
        return cls(paths.root, base / "raw", base / "clean", base / "labeled", base / "reports")


@dataclass(frozen=True)
class ImageDataset:
    """A labeled image dataset on disk and the data version it is."""

    path: Path  # the folder holding images.parquet
    version: str
    counts: dict = field(default_factory=dict)

    def splits(self) -> dict[str, ImageSplit]:
        return read_labeled(self.path)


@timing.timed("image collect")
def collect(paths: ProjectPaths, params: Params, now: datetime | None = None) -> CollectedSnapshot:
    raw_dir = ImagePaths.of(paths).raw
    latest = latest_snapshot(raw_dir)
    previous = read_snapshot(latest) if latest else None
    collection = collect_images(params.image.collect.sources, paths.root, now, previous)
    snapshot = write_snapshot(collection, raw_dir, now)
    raw_hash = track_raw(paths.root, IMAGE) if (paths.root / ".dvc").is_dir() else ""
    return CollectedSnapshot(snapshot=snapshot, report=collection.report, raw_hash=raw_hash)


def clean(paths: ProjectPaths, params: Params) -> CleanedDataset:
    where = ImagePaths.of(paths)
    snapshot = latest_snapshot(where.raw)
    if snapshot is None:
        raise UserError(
            f"no raw image snapshot in {where.raw}: run `aigc data collect --modality image` "
            "(or `aigc data refresh`)"
        )
    result = clean_images(read_snapshot(snapshot), params.image.clean)
    where.clean.mkdir(parents=True, exist_ok=True)
    result.records.to_parquet(where.clean / "records.parquet", index=False)
    result.quarantine.to_parquet(where.clean / "quarantine.parquet", index=False)
    write_json(where.reports / "clean.json", {**result.report, "snapshot": snapshot.name})
    write_json(where.reports / "clean_metrics.json", clean_metrics(result.report))
    return cleaned_dataset(where)


def label(paths: ProjectPaths, params: Params) -> LabeledDataset:
    where = ImagePaths.of(paths)
    source = where.clean / "records.parquet"
    if not source.exists():
        raise UserError(f"{source} does not exist: run `aigc data clean --modality image` first")
    try:
        overrides = read_overrides(paths.root / params.image.label.overrides_file)
    except ValueError as error:
        raise UserError(str(error)) from None
    result = label_images(pd.read_parquet(source), params.image.label, overrides)
    where.labeled.mkdir(parents=True, exist_ok=True)
    result.frame.to_parquet(where.labeled / LABELED_FILE, index=False)
    counts = {key: result.report[key] for key in ("records", "splits", "labels")}
    write_json(where.reports / "label.json", {**result.report, "counts": counts})
    metrics = {"records": counts["records"], "splits": counts["splits"]}
    write_json(where.reports / "label_metrics.json", metrics)
    return labeled_dataset(where)


def run_clean(paths: ProjectPaths) -> tuple[CleanedDataset, list]:
    return run_in_dvc(paths, CLEAN_STAGE)


def run_label(paths: ProjectPaths) -> tuple[LabeledDataset, list]:
    return run_in_dvc(paths, LABEL_STAGE)


def run_in_dvc(paths: ProjectPaths, stage: str) -> tuple[CleanedDataset | LabeledDataset, list]:
    """`dvc repro STAGE` (image_clean or image_label): skipped when nothing changed."""
    with timing.timed(stage.replace("_", " ")):
        lines = repro(paths.root, stage)
    where = ImagePaths.of(paths)
    return (cleaned_dataset(where) if stage == CLEAN_STAGE else labeled_dataset(where)), lines


@timing.timed("image version")
def version(
    paths: ProjectPaths, params: Params, raw_snapshot: str, counts: dict
) -> VersionOutcome:
    """Push the image raw data and labeled dataset, and record the image data version."""
    targets = [f"{IMAGE.raw}.dvc", LABEL_STAGE]  # text's version pushed the rest
    entry, new, remote = publish(
        paths, params, raw_snapshot, counts, IMAGE, targets, params.image.version.push
    )
    labeled = ImagePaths.of(paths).labeled
    return VersionOutcome(ImageDataset(labeled, entry.version, counts), new, remote)


def current_image_dataset(paths: ProjectPaths) -> ImageDataset:
    """data/image/labeled as dvc.lock records it (run `aigc data refresh` to build it)."""
    return ImageDataset(ImagePaths.of(paths).labeled, current_version(paths.root, IMAGE))
