"""Train/validation/test assignment for labeled records, stable under corpus changes.

A record's split depends only on its id and the salt: sha256(salt + id) read as a number in
[0, 1) puts it in "test" below `test_fraction`, in "validation" below `test_fraction +
validation_fraction`, else in "train". Adding or removing other records never moves it, so a
model evaluated on yesterday's test split never trains on it today. Changing the salt or the
fractions reshuffles on purpose.

    labeled = assign_splits(label_result.frame, params.split)   # adds `split`, checks schema
    split_report(labeled)                                       # counts per split and label
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from aigc.config import SplitParams
from aigc.data.records import LABEL_COLUMNS, LABELED_SCHEMA, SPLITS, SchemaError, check

_SCALE = float(2**53)  # a float64 holds 53 bits exactly: the top 53 bits of the hash


def split_position(identifier: str, salt: str) -> float:
    """The id's uniform position in [0, 1): the leading 53 bits of sha256(salt + id)."""
    digest = hashlib.sha256(f"{salt}{identifier}".encode()).digest()
    return (int.from_bytes(digest[:8], "big") >> 11) / _SCALE


def split_names(ids: pd.Series, params: SplitParams) -> np.ndarray:
    """The split of each id: test, validation or train."""
    positions = np.array([split_position(identifier, params.salt) for identifier in ids])
    bounds = [
        positions < params.test_fraction,
        positions < params.test_fraction + params.validation_fraction,
    ]
    return np.select(bounds, ["test", "validation"], default="train").astype(object)


def assign_splits(frame: pd.DataFrame, params: SplitParams) -> pd.DataFrame:
    """The labeled frame plus `split`, validated against the labeled-dataset schema."""
    missing = [column for column in ["id", *LABEL_COLUMNS] if column not in frame.columns]
    if missing:
        raise SchemaError(
            f"split: input lacks the column(s) {missing}; split the frame that "
            "label_records returns"
        )
    result = frame.copy()
    result["split"] = pd.Series(split_names(frame["id"], params), index=frame.index, dtype=str)
    return check(result, LABELED_SCHEMA, "split")


def split_report(frame: pd.DataFrame) -> dict:
    """Records per split and per split × label (labels sorted), JSON-ready."""
    total = len(frame)
    counts = frame["split"].value_counts()
    by_label = pd.crosstab(frame["label"], frame["split"]).reindex(columns=list(SPLITS))
    by_label = by_label.fillna(0).astype(int).sort_index()
    return {
        "records": total,
        "counts": {split: int(counts.get(split, 0)) for split in SPLITS},
        "shares": {
            split: round(int(counts.get(split, 0)) / total, 4) if total else 0.0
            for split in SPLITS
        },
        "by_label": {
            str(label): {split: int(row[split]) for split in SPLITS}
            for label, row in by_label.iterrows()
        },
    }
