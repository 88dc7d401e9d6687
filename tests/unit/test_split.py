"""Hash-based splits: right fractions, stable when the corpus grows, checked on the way out."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from aigc.config import SplitParams
from aigc.data.records import SchemaError
from aigc.data.split import assign_splits, split_names, split_report


def synthetic_ids(count: int, start: int = 0) -> pd.Series:
    return pd.Series(
        [hashlib.sha256(str(n).encode()).hexdigest()[:16] for n in range(start, start + count)]
    )


def labeled_frame(ids: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ids,
            "text": "some text",
            "source": "unit",
            "source_type": "folder",
            "uri": [f"unit://{identifier}" for identifier in ids],
            "collected_at": "2026-01-01T00:00:00Z",
            "meta": "{}",
            "flags": "",
            "label": np.where(np.arange(len(ids)) % 3 == 0, "networking", "other"),
            "label_confidence": 0.5,
            "labeling_functions": "",
        }
    )


def test_fractions_come_out_close_to_the_params() -> None:
    names = pd.Series(split_names(synthetic_ids(10_000), SplitParams()))
    shares = names.value_counts(normalize=True)
    # Binomial standard deviation at 5% of 10k is 0.22 points; allow about four of them.
    assert shares["test"] == pytest.approx(0.05, abs=0.01)
    assert shares["validation"] == pytest.approx(0.05, abs=0.01)
    assert shares["train"] == pytest.approx(0.90, abs=0.015)


def test_adding_and_removing_records_never_moves_an_old_one() -> None:
    params = SplitParams(validation_fraction=0.1, test_fraction=0.1)
    old = synthetic_ids(10_000)
    before = split_names(old, params)
    grown = pd.concat([synthetic_ids(1_000, start=10_000), old], ignore_index=True)
    after = split_names(grown, params)[1_000:]
    assert (after == before).all()
    shrunk = split_names(old.iloc[::2], params)
    assert (shrunk == before[::2]).all()


def test_splits_are_deterministic_and_the_salt_reshuffles() -> None:
    ids = synthetic_ids(2_000)
    first = split_names(ids, SplitParams())
    assert (split_names(ids, SplitParams()) == first).all()
    reshuffled = split_names(ids, SplitParams(salt="another-salt"))
    assert (reshuffled != first).sum() > 100


def test_zero_fractions_put_everything_in_train() -> None:
    names = split_names(synthetic_ids(500), SplitParams(validation_fraction=0, test_fraction=0))
    assert set(names) == {"train"}


def test_assign_splits_adds_a_valid_split_column_and_keeps_the_rest() -> None:
    frame = labeled_frame(synthetic_ids(300))
    result = assign_splits(frame, SplitParams(validation_fraction=0.2, test_fraction=0.2))
    assert set(result["split"]) == {"train", "validation", "test"}
    pd.testing.assert_frame_equal(result.drop(columns="split"), frame)
    report = split_report(result)
    assert report["records"] == 300
    assert sum(report["counts"].values()) == 300
    assert set(report["by_label"]) == {"networking", "other"}
    assert sum(report["by_label"]["networking"].values()) == 100
    for split in ("train", "validation", "test"):
        assert sum(row[split] for row in report["by_label"].values()) == report["counts"][split]


def test_assign_splits_needs_a_labeled_frame() -> None:
    frame = labeled_frame(synthetic_ids(5)).drop(columns=["label", "label_confidence"])
    with pytest.raises(SchemaError, match=r"\['label', 'label_confidence'\].*label_records"):
        assign_splits(frame, SplitParams())


def test_assign_splits_rejects_what_the_labeled_schema_rejects() -> None:
    frame = labeled_frame(synthetic_ids(5))
    frame.loc[2, "label_confidence"] = 1.5
    with pytest.raises(SchemaError, match="(?s)split: .*'label_confidence'"):
        assign_splits(frame, SplitParams())
