"""The `label` stage: clean records -> topic labels and a train/validation/test split.

    labeled = label(paths, params)          # what DVC's stage runs (`aigc data label`)
    labeled, dvc_lines = run_in_dvc(paths)  # `dvc repro label`

Outputs: data/labeled/{train,validation,test}.parquet (the dataset that is versioned),
data/reports/label.json (coverage, conflicts, label distribution, split sizes, every labeling
function's figures) and data/reports/label_metrics.json (its headline numbers, DVC's metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.data.label import label_records, read_overrides
from aigc.data.records import LABELED_SCHEMA, SPLITS, check
from aigc.data.split import assign_splits, split_report
from aigc.data.version import repro
from aigc.errors import UserError
from aigc.paths import ProjectPaths
from aigc.stages.clean import write_json


@dataclass(frozen=True)
class LabeledDataset:
    path: Path
    counts: dict  # {"records": n, "splits": {split: n}, "labels": {label: n}}


def label(paths: ProjectPaths, params: Params) -> LabeledDataset:
    source = paths.clean / "records.parquet"
    if not source.exists():
        raise UserError(f"{source} does not exist: run `aigc data clean` first")
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
    write_json(paths.reports / "label_metrics.json", label_metrics(result.report, counts))
    return LabeledDataset(path=paths.labeled, counts=counts)


def run_in_dvc(paths: ProjectPaths) -> tuple[LabeledDataset, list[str]]:
    """`dvc repro label` (which runs `label` unless its inputs are unchanged)."""
    with timing.timed("label"):
        lines = repro(paths.root, "label")
    return labeled_dataset(paths), lines


def labeled_dataset(paths: ProjectPaths) -> LabeledDataset:
    """The reference to the stage's outputs, read from its report."""
    report = json.loads((paths.reports / "label.json").read_text())
    return LabeledDataset(path=paths.labeled, counts=report["counts"])


def label_metrics(report: dict, counts: dict) -> dict:
    """The report's headline numbers: what `dvc metrics show` and `dvc exp show` list.

    Shares of records (coverage: some function voted; conflict: functions voted for different
    topics) and records per split; per-function figures stay in label.json."""
    return {
        "records": counts["records"],
        "coverage": report["coverage"],
        "overlap": report["overlap"],
        "conflict": report["conflict"],
        "mean_confidence": report["mean_confidence"],
        "splits": dict(counts["splits"]),
    }


def dataset_counts(frame: pd.DataFrame) -> dict:
    splits = frame["split"].value_counts().reindex(list(SPLITS), fill_value=0)
    labels = frame["label"].value_counts().sort_index()
    return {
        "records": len(frame),
        "splits": {str(key): int(value) for key, value in splits.items()},
        "labels": {str(key): int(value) for key, value in labels.items()},
    }
