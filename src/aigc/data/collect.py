"""The `collect` stage: read every configured source into one immutable raw snapshot.

`collect_sources(sources, root, now, previous)` is the core: it reads each source, builds
the raw frame (see aigc.data.records) and a collection report. A record already present in
the previous snapshot (same uri and id) keeps its `collected_at`, so collecting unchanged
sources twice yields the same frame, and `write_snapshot` then writes nothing: unchanged
inputs leave the raw data, and so the data version, unchanged.

Snapshots are `data/raw/snapshot-<UTC time>.parquet`, written once and never modified; the
clean stage reads the newest. Each source's `on_error` decides what a failure does: `fail`
stops the collection with an error naming the source, `skip` goes on and records it.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pandas as pd

from aigc.config import BuiltinSource, FolderSource, HttpSource
from aigc.data.records import RAW_COLUMNS, RAW_SCHEMA, check, text_id
from aigc.data.sources.base import SourceError, SourceRecord
from aigc.data.sources.builtin import read_builtin
from aigc.data.sources.folder import list_files, read_file
from aigc.data.sources.http import read_http

SNAPSHOT_GLOB = "snapshot-*.parquet"
T = TypeVar("T")


@dataclass
class SourceOutcome:
    name: str
    type: str
    records: int = 0
    flagged: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # folder: links out, with why
    seconds: float = 0.0


@dataclass(frozen=True)
class Collection:
    frame: pd.DataFrame
    sources: tuple[SourceOutcome, ...]

    @property
    def report(self) -> dict:
        return {
            "records": len(self.frame),
            "sources": [vars(outcome) for outcome in self.sources],
        }


@dataclass(frozen=True)
class RawSnapshot:
    """A reference to a raw snapshot file; `new` is False when nothing had changed."""

    path: Path
    digest: str
    records: int
    new: bool


def collect_sources(
    sources: Iterable[BuiltinSource | FolderSource | HttpSource],
    root: Path,
    now: datetime | None = None,
    previous: pd.DataFrame | None = None,
) -> Collection:
    """Read all sources; raise SourceError for a failing source whose on_error is `fail`."""
    timestamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    rows: list[dict] = []
    outcomes = []
    for source in sources:
        outcome = SourceOutcome(name=source.name, type=source.type)
        started = time.perf_counter()
        for record in _read_source(source, root, outcome):
            rows.append(_row(source, record))
            outcome.records += 1
            for flag in record.flags:
                outcome.flagged[flag] = outcome.flagged.get(flag, 0) + 1
        outcome.seconds = round(time.perf_counter() - started, 3)
        outcomes.append(outcome)
    frame = pd.DataFrame(rows, columns=RAW_COLUMNS)
    frame = _carry_collected_at(frame, previous, timestamp)
    frame = frame.sort_values(["source", "uri"], kind="stable").reset_index(drop=True)
    check(frame, RAW_SCHEMA, "collect")
    return Collection(frame=frame, sources=tuple(outcomes))


def _read_source(source, root: Path, outcome: SourceOutcome) -> Iterator[SourceRecord]:
    """The records of one source, applying its on_error policy to failures."""
    if isinstance(source, FolderSource):
        listing = _guarded(source, outcome, lambda: list_files(source, root))
        if listing is None:
            return
        outcome.refused = listing.refused
        for path in listing.files:
            records = _guarded(source, outcome, lambda path=path: list(read_file(source, path)))
            yield from records or []
        return
    reader = read_builtin if isinstance(source, BuiltinSource) else read_http
    yield from _guarded(source, outcome, lambda: list(reader(source))) or []


def _guarded(source, outcome: SourceOutcome, read: Callable[[], T]) -> T | None:
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


def _row(source, record: SourceRecord) -> dict:
    return {
        "id": text_id(record.text),
        "text": record.text,
        "source": source.name,
        "source_type": source.type,
        "uri": record.uri,
        "collected_at": "",
        "meta": json.dumps(record.meta, sort_keys=True, ensure_ascii=False),
        "flags": ",".join(sorted(set(record.flags))),
    }


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


# --- snapshots -------------------------------------------------------------------------


def snapshot_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def latest_snapshot(raw_dir: Path) -> Path | None:
    snapshots = sorted(raw_dir.glob(SNAPSHOT_GLOB))
    return snapshots[-1] if snapshots else None


def read_snapshot(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def write_snapshot(
    collection: Collection, raw_dir: Path, now: datetime | None = None
) -> RawSnapshot:
    """Write the collection as a new snapshot unless it equals the newest one."""
    data = snapshot_bytes(collection.frame)
    digest = hashlib.sha256(data).hexdigest()
    latest = latest_snapshot(raw_dir)
    if latest is not None and hashlib.sha256(latest.read_bytes()).hexdigest() == digest:
        return RawSnapshot(path=latest, digest=digest, records=len(collection.frame), new=False)
    raw_dir.mkdir(parents=True, exist_ok=True)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = raw_dir / f"snapshot-{stamp}.parquet"
    if path.exists() or (latest is not None and path.name <= latest.name):
        path = raw_dir / f"snapshot-{stamp}-{digest[:8]}.parquet"
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(data)
    temporary.rename(path)  # atomic: a reader never sees half a snapshot
    report = {**collection.report, "snapshot": path.name, "sha256": digest}
    path.with_suffix(".report.json").write_text(json.dumps(report, indent=2) + "\n")
    return RawSnapshot(path=path, digest=digest, records=len(collection.frame), new=True)
