"""The record: what every data stage reads and writes, and the schemas checked at each entry.

A record is one document. Columns shared by every stage:

    id            hash of the record's normalized text (content id; splits and overrides use it)
    text          the document
    source        the configured source's name
    source_type   builtin | folder | http
    uri           where the record came from; unique within a snapshot
    collected_at  ISO-8601 UTC time the record was first seen
    meta          JSON object: the source's metadata (for builtin: the module path)
    flags         comma-separated problems found at collection (invalid_utf8, binary, ...)

Each stage adds its own columns (clean: nothing; quarantine: rule, detail, duplicate_of;
label: label, label_confidence, labeling_functions; split: split).
`check(frame, schema, stage)` validates a frame with pandera and turns a failure into a
`SchemaError` that names the stage, the column and the offending rows.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import pandas as pd
import pandera.pandas as pa

from aigc.errors import UserError

RAW_COLUMNS = ["id", "text", "source", "source_type", "uri", "collected_at", "meta", "flags"]
QUARANTINE_COLUMNS = [*RAW_COLUMNS, "rule", "detail", "duplicate_of"]
LABEL_COLUMNS = ["label", "label_confidence", "labeling_functions"]
SPLITS = ("train", "validation", "test")

# Flags that make a record unusable as text; the clean stage's `flagged` rule quarantines them.
# invalid_utf8 is one: the decoder put U+FFFD where the bytes were, which must not be trained on.
HARD_FLAGS = frozenset({"binary", "invalid_utf8", "malformed_json", "missing_field", "not_text"})

_SPACE_RUN = re.compile(r"[ \t\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, unified newlines, trailing spaces dropped, runs of blank lines folded."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.rstrip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def text_id(text: str) -> str:
    """The content id of a text: sha256 of its normalized form, 16 hex digits."""
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()[:16]


class SchemaError(UserError, ValueError):
    """A stage's input does not have the shape the stage needs."""


_HEX_ID = pa.Check.str_matches(r"^[0-9a-f]{16}$", error="id must be 16 hex digits")

RAW_SCHEMA = pa.DataFrameSchema(
    {
        "id": pa.Column(str, _HEX_ID),
        "text": pa.Column(str),
        "source": pa.Column(str, pa.Check.str_length(min_value=1)),
        "source_type": pa.Column(str, pa.Check.isin(["builtin", "folder", "http"])),
        "uri": pa.Column(str, unique=True),
        "collected_at": pa.Column(str),
        "meta": pa.Column(str),
        "flags": pa.Column(str),
    },
    strict=False,
    coerce=False,
)

CLEAN_SCHEMA = RAW_SCHEMA.add_columns({"id": pa.Column(str, _HEX_ID, unique=True)})

LABELED_SCHEMA = CLEAN_SCHEMA.add_columns(
    {
        "label": pa.Column(str, pa.Check.str_length(min_value=1)),
        "label_confidence": pa.Column(float, pa.Check.in_range(0.0, 1.0)),
        "labeling_functions": pa.Column(str),
        "split": pa.Column(str, pa.Check.isin(list(SPLITS))),
    }
)


def check(frame: pd.DataFrame, schema: pa.DataFrameSchema, stage: str) -> pd.DataFrame:
    """Validate `frame` at the entry of `stage`; raise SchemaError naming column and rows."""
    try:
        return schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        failures = errors.failure_cases
        lines = [f"{stage}: input does not match the {stage} schema:"]
        for (column, check_name), group in failures.groupby(
            ["column", "check"], dropna=False, sort=False
        ):
            rows = group["index"].dropna().astype(int).tolist()
            where = _describe_rows(frame, rows)
            lines.append(f"  - column {column!r} fails {check_name}{where}")
        lines.append(
            "  Fix the upstream stage or the source that produced these rows, then rerun."
        )
        raise SchemaError("\n".join(lines)) from None


def _describe_rows(frame: pd.DataFrame, rows: list[int]) -> str:
    if not rows:
        return ""
    shown = rows[:5]
    labels = []
    for row in shown:
        uri = frame["uri"].iloc[row] if "uri" in frame.columns and row < len(frame) else None
        labels.append(f"row {row}" + (f" ({uri})" if uri is not None else ""))
    more = f" and {len(rows) - len(shown)} more" if len(rows) > len(shown) else ""
    return ": " + ", ".join(labels) + more


class AccountingError(RuntimeError):
    """A clean stage lost, duplicated or invented records; a bug, never a data problem."""


def check_accounting(raw: pd.DataFrame, records: pd.DataFrame, quarantine: pd.DataFrame) -> None:
    """Raise AccountingError unless raw's uris are split exactly between the two frames."""
    raw_uris, kept, held = set(raw["uri"]), set(records["uri"]), set(quarantine["uri"])
    problems = []
    if len(raw) != len(records) + len(quarantine):
        problems.append(f"{len(raw)} raw != {len(records)} clean + {len(quarantine)} quarantined")
    if kept & held:
        problems.append(f"both clean and quarantined: {sorted(kept & held)[:5]}")
    if kept | held != raw_uris:
        lost, invented = sorted(raw_uris - kept - held), sorted((kept | held) - raw_uris)
        problems.append(f"lost uris {lost[:5]}, invented uris {invented[:5]}")
    if problems:
        raise AccountingError("clean: records do not add up: " + "; ".join(problems))


ORDER_COLUMNS = ["collected_at", "source", "uri"]  # the order the clean stages visit records in


def in_collection_order(
    raw: pd.DataFrame,
    columns: list[str],
    stage: str,
    fix: str,
    schema: pa.DataFrameSchema | None = None,
) -> pd.DataFrame:
    """`raw`'s `columns`, rows in (collected_at, source, uri) order: the first of a group of
    duplicates is then the one a clean stage keeps, and reruns are byte-identical. A
    SchemaError names the columns missing (and `fix`), or what fails `schema`."""
    missing = [column for column in columns if column not in raw.columns]
    if missing:
        raise SchemaError(
            f"{stage}: input lacks column(s) {missing}; it must have {columns}. {fix}"
        )
    if schema is not None:
        check(raw, schema, stage)
    return raw[columns].sort_values(ORDER_COLUMNS, kind="stable", ignore_index=True)
