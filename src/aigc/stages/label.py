"""The `label` stage: a modality's clean records -> labels and a train/validation/test split.

    labeled = label(paths, params, modality)          # what its DVC stage runs (`aigc data label`)
    labeled, dvc_lines = run_in_dvc(paths, modality)  # `dvc repro label` / `image_label`

The modality labels (`label_records`: text by topic with labeling functions, images by their
source's class; both with the manual overrides and the hash split). Outputs, under its data
folder: labeled/{train,validation,test}.parquet (the dataset that is versioned),
reports/label.json (the whole report and the counts) and reports/label_metrics.json (its
headline numbers, DVC's metrics).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.data.overrides import read_overrides
from aigc.data.records import SPLITS
from aigc.data.version import repro
from aigc.errors import UserError
from aigc.modality import Modality, data_of
from aigc.paths import DataPaths, ProjectPaths
from aigc.stages.clean import write_json


@dataclass(frozen=True)
class LabeledDataset:
    path: Path
    counts: dict  # {"records": n, "splits": {split: n}, "labels": {label: n}}


def label(paths: ProjectPaths, params: Params, modality: Modality) -> LabeledDataset:
    where = paths.data(data_of(modality))
    source = where.clean / "records.parquet"
    if not source.exists():
        raise UserError(
            f"{source} does not exist: run `aigc data clean --modality {modality.name}` first"
        )
    section = modality.data_section(params)
    try:
        overrides = read_overrides(paths.root / section.label.overrides_file)
    except ValueError as error:
        raise UserError(str(error)) from None
    result = modality.label_records(pd.read_parquet(source), section, overrides)
    write_splits(result.frame, where.labeled)
    counts = dataset_counts(result.frame)
    write_json(where.reports / "label.json", {**result.report, "counts": counts})
    write_json(where.reports / "label_metrics.json", modality.label_metrics(result.report, counts))
    return LabeledDataset(path=where.labeled, counts=counts)


def write_splits(frame: pd.DataFrame, folder: Path) -> None:
    """One parquet file per split, in the frame's order: the labeled dataset on disk."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        part = frame[frame["split"] == split].reset_index(drop=True)
        part.to_parquet(folder / f"{split}.parquet", index=False)


def run_in_dvc(paths: ProjectPaths, modality: Modality) -> tuple[LabeledDataset, list[str]]:
    """`dvc repro` of the modality's label stage (skipped when its inputs are unchanged)."""
    layout = data_of(modality)
    with timing.timed("label"):
        lines = repro(paths.root, layout.label_stage)
    return labeled_dataset(paths.data(layout)), lines


def labeled_dataset(where: DataPaths) -> LabeledDataset:
    """The reference to the stage's outputs, read from its report."""
    report = json.loads((where.reports / "label.json").read_text())
    return LabeledDataset(path=where.labeled, counts=report["counts"])


def dataset_counts(frame: pd.DataFrame) -> dict:
    splits = frame["split"].value_counts().reindex(list(SPLITS), fill_value=0)
    labels = frame["label"].value_counts().sort_index()
    return {
        "records": len(frame),
        "splits": {str(key): int(value) for key, value in splits.items()},
        "labels": {str(key): int(value) for key, value in labels.items()},
    }
