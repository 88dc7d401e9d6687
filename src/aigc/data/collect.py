"""What every modality's collection shares: reading sources into rows, and the rules of failure.

`gather(sources, root, now, previous, columns, read_source, make_row, why_nothing)` is called
by each modality's collect core (aigc.text.collect, aigc.image.collect) with its readers. A
record already present in the previous snapshot (same uri and id) keeps its `collected_at`, so
collecting unchanged sources twice yields the same frame, and `write_snapshot`
(aigc.data.snapshots) then writes nothing: unchanged inputs leave the raw data, and so the
data version, unchanged. Each source's `on_error` decides what a failure does:
- `fail` stops the collection with an error naming the source; nothing is written.
- `skip` goes on, and the source (for a folder: the file) that failed keeps its records of
  the previous snapshot, unchanged: a source that is down never empties the dataset. What
  was read before the failure (pages 1-2 of an API failing on page 3) is dropped, so a
  source is never half old, half new. Per source, the report counts `carried_forward` and
  `partial_dropped` records beside `errors`, and lists what a folder `refused` to read.
A collection that ends with no record at all is an error naming every source and why it
gave nothing (`NothingCollected`); no snapshot is written.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from aigc.data.sources.base import SourceError, SourceRecord
from aigc.errors import UserError

T = TypeVar("T")


@dataclass
class SourceOutcome:
    name: str
    type: str
    records: int = 0  # read in this collection
    flagged: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # folder: {path, reason}
    carried_forward: int = 0  # kept from the previous snapshot for what failed (skip)
    partial_dropped: int = 0  # read before a failure, dropped for the carried records
    seconds: float = 0.0


@dataclass(frozen=True)
class Collection:
    frame: pd.DataFrame
    sources: tuple[SourceOutcome, ...]

    @property
    def report(self) -> dict:
        return {
            "records": len(self.frame),
            "carried_forward": sum(outcome.carried_forward for outcome in self.sources),
            "sources": [vars(outcome) for outcome in self.sources],
        }


class NothingCollected(SourceError):
    """No source gave a record, and none had records of an earlier snapshot to keep."""

    def __init__(self, names: list[str], reasons: list[str]) -> None:
        self.source = ", ".join(names)
        self.location = "collect.sources"
        self.problem = "nothing was collected"
        lines = [f"  - {reason}" for reason in reasons] or ["  - no sources are configured"]
        UserError.__init__(
            self,
            "nothing was collected, so no snapshot was written:\n"
            + "\n".join(lines)
            + "\nFix: put documents in the folder sources, fix the failing sources, or add a "
            "source under collect.sources in params.yaml.",
        )


def gather(
    sources: Iterable[Any],
    root: Path,
    now: datetime | None,
    previous: pd.DataFrame | None,
    columns: list[str],
    strings: list[str],
    read_source: Callable[[Any, Path, SourceOutcome, pd.DataFrame], tuple[list, pd.DataFrame]],
    make_row: Callable[[Any, Any], dict],
    why_nothing: Callable[[Any, SourceOutcome, Path], str],
) -> tuple[pd.DataFrame, tuple[SourceOutcome, ...]]:
    """The rows of every source (text's or images'), with first-seen times and what was
    carried forward, and each source's outcome; NothingCollected when there is no row.

    `read_source(source, root, outcome, earlier)` gives (records read, earlier rows kept for
    what failed); `make_row(source, record)` a row of `columns`. The rows come sorted by
    source and uri, the `strings` columns as str."""
    timestamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    sources = tuple(sources)
    if previous is None:
        previous = pd.DataFrame(columns=columns)
    rows: list[dict] = []
    carried: list[pd.DataFrame] = []
    outcomes = []
    for source in sources:
        outcome = SourceOutcome(name=source.name, type=source.type)
        started = time.perf_counter()
        earlier = previous[previous["source"] == source.name][columns]
        records, kept = read_source(source, root, outcome, earlier)
        for record in records:
            rows.append(make_row(source, record))
            for flag in record.flags:
                outcome.flagged[flag] = outcome.flagged.get(flag, 0) + 1
        outcome.records = len(records)
        outcome.carried_forward = len(kept)
        carried += [kept] if len(kept) else []
        outcome.seconds = round(time.perf_counter() - started, 3)
        outcomes.append(outcome)
    fresh = _carry_collected_at(pd.DataFrame(rows, columns=columns), previous, timestamp)
    frame = pd.concat([fresh, *carried], ignore_index=True) if carried else fresh
    if frame.empty:
        reasons = [
            why_nothing(source, outcome, root)
            for source, outcome in zip(sources, outcomes, strict=True)
        ]
        raise NothingCollected([source.name for source in sources], reasons)
    frame = frame.astype(dict.fromkeys(strings, "str"))
    frame = frame.sort_values(["source", "uri"], kind="stable").reset_index(drop=True)
    return frame, tuple(outcomes)


def read_all(
    source: Any, outcome: SourceOutcome, read: Callable[[], Iterable[SourceRecord]]
) -> list[SourceRecord] | None:
    """Every record `read()` yields, or None on a skipped failure (what it got is counted)."""
    got: list[SourceRecord] = []

    def consume() -> list[SourceRecord]:
        for record in read():
            got.append(record)
        return got

    records = guarded(source, outcome, consume)
    if records is None:
        outcome.partial_dropped += len(got)
    return records


def guarded(source: Any, outcome: SourceOutcome, read: Callable[[], T]) -> T | None:
    """`read()`, or None with the error recorded when it fails and on_error is `skip`."""
    try:
        return read()
    except SourceError as error:
        if source.on_error == "fail":
            raise
        outcome.errors.append(str(error))
        return None
    except OSError as error:
        wrapped = SourceError(source.name, getattr(error, "filename", "") or "-", str(error))
        if source.on_error == "fail":
            raise wrapped from error
        outcome.errors.append(str(wrapped))
        return None


def _carry_collected_at(
    frame: pd.DataFrame, previous: pd.DataFrame | None, timestamp: str
) -> pd.DataFrame:
    """Records seen before keep their first-seen time; new ones get `timestamp`."""
    frame = frame.copy()
    frame["collected_at"] = timestamp
    if previous is not None and len(previous) and len(frame):
        seen = previous.set_index(["uri", "id"])["collected_at"]
        seen = seen[~seen.index.duplicated()]
        keys = pd.MultiIndex.from_frame(frame[["uri", "id"]])
        earlier = seen.reindex(keys).to_numpy()
        frame["collected_at"] = pd.Series(earlier, index=frame.index).fillna(timestamp)
    return frame.astype({"collected_at": "str"})
