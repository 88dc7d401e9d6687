"""The image `label` stage core: the source's class, overridden by hand, and a hash split.

    result = label_images(clean, params.image.label, read_overrides(overrides_file))
    result.frame    # id, label, split, png, source: the labeled dataset (aigc.image.dataset)
    result.report   # counts per split and class, overrides applied, unlabeled images

A row of the overrides CSV (`id,label`, the id being the clean image's pixel hash) wins over
the source's class; its label must be one of the classes the sources give (a typo would make
a class of its own). An image with no class (a file at the top of an image folder) and no
override is left out of the dataset and counted as `unlabeled` in the report. The split is
text's (aigc.data.split): a hash of the id and the salt, so it never moves when other images
come or go; the splits are named as text's are (train, validation, test).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from aigc.config import ImageLabelParams, ImageParams
from aigc.data.split import split_names
from aigc.errors import UserError
from aigc.image.dataset import LABELED_COLUMNS, SPLITS


@dataclass(frozen=True)
class ImageLabelResult:
    frame: pd.DataFrame
    report: dict


def label_images(
    clean: pd.DataFrame, params: ImageLabelParams, overrides: pd.DataFrame
) -> ImageLabelResult:
    """The labeled dataset: every clean image with a class, its split and its PNG."""
    source_labels = clean["label"].astype(str)
    classes = sorted(set(source_labels) - {""})
    manual = overrides.drop_duplicates("id").set_index("id")["label"].astype(str)
    unknown_labels = manual[~manual.isin(classes)]
    if len(unknown_labels):
        identifier, label = next(iter(unknown_labels.items()))
        raise UserError(
            f"{params.overrides_file}: id {identifier} has label {label!r}, which no image "
            f"source gives; use one of {classes} (or fix the row)"
        )
    overridden = clean["id"].isin(manual.index).to_numpy()
    labels = np.where(overridden, clean["id"].map(manual), source_labels).astype(object)
    labeled = labels != ""
    frame = clean.loc[labeled, ["id", "png", "source"]].copy()
    frame["label"] = labels[labeled].astype(str)
    names = split_names(frame["id"], params.split)
    frame["split"] = np.asarray(names).astype(str)
    frame = frame.sort_values("id", kind="stable", ignore_index=True)[LABELED_COLUMNS]
    unlabeled = clean.loc[~labeled, "id"].tolist()
    unknown_ids = sorted(set(manual.index) - set(clean["id"]))
    report = {
        **counts(frame),
        "overrides": {
            "applied": int(overridden.sum()),
            "changed": int((overridden & (labels != source_labels.to_numpy())).sum()),
            "unknown": len(unknown_ids),
            "unknown_ids": unknown_ids[:20],
        },
        "unlabeled": {"count": len(unlabeled), "ids": unlabeled[:20]},
    }
    return ImageLabelResult(frame, report)


def counts(frame: pd.DataFrame) -> dict:
    """Images in all, per split, per class and per class x split (JSON-ready)."""
    by_split = frame["split"].value_counts()
    table = pd.crosstab(frame["label"], frame["split"]).reindex(columns=list(SPLITS))
    table = table.fillna(0).astype(int).sort_index()
    return {
        "records": len(frame),
        "splits": {split: int(by_split.get(split, 0)) for split in SPLITS},
        "labels": {str(label): int(row.sum()) for label, row in table.iterrows()},
        "by_label": {
            str(label): {split: int(row[split]) for split in SPLITS}
            for label, row in table.iterrows()
        },
    }


def label_dataset(
    clean: pd.DataFrame, params: ImageParams, overrides: pd.DataFrame
) -> ImageLabelResult:
    """The image modality's label stage core: `label_images` with `params.label` (the image
    section's), its split included."""
    return label_images(clean, params.label, overrides)


def label_metrics(report: dict, counts: dict) -> dict:
    """The headline numbers DVC lists: images in all and per split."""
    return {"records": counts["records"], "splits": counts["splits"]}
