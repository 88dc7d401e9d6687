"""Manual labels: a CSV of `id,label` rows that wins over what a modality's labeling decides.

    overrides = read_overrides(root / params.label.overrides_file)    # an empty frame if absent

Shared by text (aigc.text.label) and images (aigc.image.label); each checks the labels
against the ones it knows.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def read_overrides(path: Path | str) -> pd.DataFrame:
    """The manual labels in a CSV with an `id,label` header; a missing file means none."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        return pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise ValueError(
            f"overrides file {path} is not a readable UTF-8 CSV ({error}); "
            "write it as lines of `<record id>,<label>` under an `id,label` header"
        ) from None
    table.columns = [str(column).strip() for column in table.columns]
    missing = [column for column in ("id", "label") if column not in table.columns]
    if missing:
        raise ValueError(
            f"overrides file {path} lacks the column(s) {missing} (found {list(table.columns)}); "
            "its first line must be the header `id,label`, then one `<record id>,<label>` a line"
        )
    table = table[["id", "label"]].apply(lambda column: column.str.strip())
    check_override_rows(table, f"overrides file {path}")
    return table.reset_index(drop=True)


def check_override_rows(overrides: pd.DataFrame, origin: str) -> None:
    empty = (overrides["id"] == "") | (overrides["label"] == "")
    if empty.any():
        rows = [
            f"row {position + 1} (id {identifier!r}, label {label!r})"
            for position, (identifier, label) in enumerate(
                zip(overrides["id"], overrides["label"], strict=True)
            )
            if empty.iloc[position]
        ]
        raise ValueError(
            f"{origin}: empty id or label in {', '.join(rows[:5])}; give each row a record id "
            "and a label, or delete the row"
        )
    labels_per_id = overrides.groupby("id")["label"].nunique()
    contradictory = sorted(labels_per_id.index[labels_per_id > 1])
    if contradictory:
        raise ValueError(
            f"{origin}: ids {contradictory[:5]} are given different labels; keep one row per id"
        )
