"""The data stages' edges: read the inputs, call the core function, write the outputs.

Each function here is the `main()` of one stage and is what both the `aigc data …` CLI verb
(run by DVC) and the Prefect task call. They return small frozen references (typed
artifacts), never DataFrames, so Prefect results stay tiny.

Files, relative to the project root (dvc.yaml names the same):
    data/raw/snapshot-*.parquet      collect    (immutable, newest is read by clean)
    data/clean/records.parquet       clean
    data/clean/quarantine.parquet    clean      every record a rule removed, with the rule
    data/reports/clean.json, .png    clean      counts per rule, length histogram
    data/labeled/{train,validation,test}.parquet   label (the versioned dataset)
    data/reports/label.json          label      coverage, conflicts, distribution, splits
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from aigc.config import Params
from aigc.data.clean import clean_records, write_length_histogram
from aigc.data.collect import (
    RawSnapshot,
    collect_sources,
    latest_snapshot,
    read_snapshot,
    write_snapshot,
)
from aigc.data.label import label_records, read_overrides
from aigc.data.records import LABELED_SCHEMA, SPLITS, check
from aigc.data.split import assign_splits, split_report
from aigc.paths import ProjectPaths


@dataclass(frozen=True)
class CollectedSnapshot:
    snapshot: RawSnapshot
    report: dict


@dataclass(frozen=True)
class CleanedDataset:
    path: Path
    records: int
    quarantined: int
    quarantined_by_rule: dict[str, int]


@dataclass(frozen=True)
class LabeledDataset:
    path: Path
    counts: dict  # {"splits": {split: n}, "labels": {label: n}}
    version: str = ""


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def collect_stage(
    paths: ProjectPaths, params: Params, now: datetime | None = None
) -> CollectedSnapshot:
    latest = latest_snapshot(paths.raw)
    previous = read_snapshot(latest) if latest else None
    collection = collect_sources(params.collect.sources, paths.root, now, previous)
    snapshot = write_snapshot(collection, paths.raw, now)
    return CollectedSnapshot(snapshot=snapshot, report=collection.report)


def clean_stage(paths: ProjectPaths, params: Params) -> CleanedDataset:
    snapshot = latest_snapshot(paths.raw)
    if snapshot is None:
        raise FileNotFoundError(
            f"no raw snapshot in {paths.raw}: run `aigc data collect` (or the data flow) first"
        )
    result = clean_records(read_snapshot(snapshot), params.clean)
    paths.clean.mkdir(parents=True, exist_ok=True)
    result.records.to_parquet(paths.clean / "records.parquet", index=False)
    result.quarantine.to_parquet(paths.clean / "quarantine.parquet", index=False)
    write_json(paths.reports / "clean.json", {**result.report, "snapshot": snapshot.name})
    write_length_histogram(result, paths.reports / "clean_lengths.png")
    by_rule = result.quarantine["rule"].value_counts().sort_index().to_dict()
    return CleanedDataset(
        path=paths.clean,
        records=len(result.records),
        quarantined=len(result.quarantine),
        quarantined_by_rule={str(rule): int(count) for rule, count in by_rule.items()},
    )


def label_stage(paths: ProjectPaths, params: Params) -> LabeledDataset:
    source = paths.clean / "records.parquet"
    if not source.exists():
        raise FileNotFoundError(f"{source} does not exist: run `aigc data clean` first")
    import aigc.data.labeling_functions  # noqa: F401  (registers the Python labeling functions)

    overrides = read_overrides(paths.root / params.label.overrides_file)
    result = label_records(pd.read_parquet(source), params.label, overrides)
    frame = check(assign_splits(result.frame, params.split), LABELED_SCHEMA, "label")
    paths.labeled.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        part = frame[frame["split"] == split].reset_index(drop=True)
        part.to_parquet(paths.labeled / f"{split}.parquet", index=False)
    counts = dataset_counts(frame)
    write_json(
        paths.reports / "label.json",
        {**result.report, "splits": split_report(frame), "counts": counts},
    )
    return LabeledDataset(path=paths.labeled, counts=counts)


def dataset_counts(frame: pd.DataFrame) -> dict:
    splits = frame["split"].value_counts().reindex(list(SPLITS), fill_value=0)
    labels = frame["label"].value_counts().sort_index()
    return {
        "records": len(frame),
        "splits": {str(key): int(value) for key, value in splits.items()},
        "labels": {str(key): int(value) for key, value in labels.items()},
    }


def read_labeled(path: Path) -> pd.DataFrame:
    """The labeled dataset in `path` as one frame (splits in their column)."""
    parts = [pd.read_parquet(path / f"{split}.parquet") for split in SPLITS]
    return pd.concat(parts, ignore_index=True)


def cleaned_dataset(paths: ProjectPaths) -> CleanedDataset:
    """The reference to the clean stage's outputs, from its report (after a DVC run)."""
    report = json.loads((paths.reports / "clean.json").read_text())
    by_rule = report["quarantined_by_rule"]
    return CleanedDataset(
        path=paths.clean,
        records=int(report["output_records"]),
        quarantined=int(sum(by_rule.values())),
        quarantined_by_rule={str(rule): int(count) for rule, count in by_rule.items()},
    )


def labeled_dataset(paths: ProjectPaths) -> LabeledDataset:
    """The reference to the label stage's outputs, from its report (after a DVC run)."""
    report = json.loads((paths.reports / "label.json").read_text())
    return LabeledDataset(path=paths.labeled, counts=report["counts"])
