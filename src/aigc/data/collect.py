"""The `collect` stage: read every configured source into one immutable raw snapshot.

`collect_sources(sources, root, now, previous)` is the core: it reads each source, builds
the raw frame (see aigc.data.records) and a collection report. A record already present in
the previous snapshot (same uri and id) keeps its `collected_at`, so collecting unchanged
sources twice yields the same frame, and `write_snapshot` then writes nothing: unchanged
inputs leave the raw data, and so the data version, unchanged.

Snapshots are `data/raw/snapshot-<UTC time>.parquet`, written once and never modified; the
clean stage reads the newest. Each source's `on_error` decides what a failure does:
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

import hashlib
import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from aigc.config import BuiltinSource, FolderSource, HttpSource
from aigc.data.records import RAW_COLUMNS, RAW_SCHEMA, check, text_id
from aigc.data.sources.base import SourceError, SourceRecord
from aigc.data.sources.builtin import read_builtin
from aigc.data.sources.folder import list_files, read_file, source_folder
from aigc.data.sources.http import read_http
from aigc.errors import UserError
from aigc.paths import WRITE_FIXES, NotWritable, require_writable

SNAPSHOT_GLOB = "snapshot-*.parquet"
PARTIAL_GLOB = "snapshot-*.tmp"  # a snapshot or report being written (or left by a crash)
T = TypeVar("T")
AnySource = BuiltinSource | FolderSource | HttpSource


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


@dataclass(frozen=True)
class RawSnapshot:
    """A reference to a raw snapshot file; `new` is False when nothing had changed."""

    path: Path
    digest: str
    records: int
    new: bool


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


def collect_sources(
    sources: Iterable[AnySource],
    root: Path,
    now: datetime | None = None,
    previous: pd.DataFrame | None = None,
) -> Collection:
    """Read all sources; raise SourceError for a failing source whose on_error is `fail`."""
    frame, outcomes = gather(
        sources, root, now, previous, RAW_COLUMNS, _read_source, _row, _why_nothing
    )
    frame = frame.astype(dict.fromkeys(RAW_COLUMNS, "str"))
    frame = frame.sort_values(["source", "uri"], kind="stable").reset_index(drop=True)
    check(frame, RAW_SCHEMA, "collect")
    return Collection(frame=frame, sources=tuple(outcomes))


def gather(
    sources: Iterable[Any],
    root: Path,
    now: datetime | None,
    previous: pd.DataFrame | None,
    columns: list[str],
    read_source: Callable[[Any, Path, SourceOutcome, pd.DataFrame], tuple[list, pd.DataFrame]],
    make_row: Callable[[Any, Any], dict],
    why_nothing: Callable[[Any, SourceOutcome, Path], str],
) -> tuple[pd.DataFrame, tuple[SourceOutcome, ...]]:
    """The rows of every source (text's or images'), with first-seen times and what was
    carried forward, and each source's outcome; NothingCollected when there is no row.

    `read_source(source, root, outcome, earlier)` gives (records read, earlier rows kept for
    what failed); `make_row(source, record)` a row of `columns`."""
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
    return frame, tuple(outcomes)


def _read_source(
    source: AnySource, root: Path, outcome: SourceOutcome, earlier: pd.DataFrame
) -> tuple[list[SourceRecord], pd.DataFrame]:
    """(records read, records of `earlier` kept for what failed), applying on_error."""
    if not isinstance(source, FolderSource):
        if isinstance(source, BuiltinSource):
            cache = root / ".aigc" / "cache"  # parsing CPython's sources takes seconds
            records = read_all(source, outcome, lambda: _read_builtin(source, cache))
        else:
            records = read_all(source, outcome, lambda: read_http(source))
        return (records, earlier.iloc[:0]) if records is not None else ([], earlier)
    listing = guarded(source, outcome, lambda: list_files(source, root))
    if listing is None:
        return [], earlier
    outcome.refused = listing.refused
    records, failed_uris = [], []
    for path in listing.files:
        read = read_all(source, outcome, lambda path=path: read_file(source, path))
        if read is None:
            failed_uris.append(path.as_uri())
        records += read or []
    # a file's records have uri `file:///…/name` or, one per line or row, `file:///…/name#L3`
    file_uri = earlier["uri"].astype(object).str.split("#", n=1).str[0]
    return records, earlier[file_uri.isin(failed_uris)]


def _read_builtin(source: BuiltinSource, cache: Path) -> Iterator[SourceRecord]:
    """The builtin source's records. Its cache is the project's: a cache that cannot be
    written (a read-only folder, the file-size limit) is NotWritable naming the cache, not
    an error of the source."""
    require_writable(cache)
    try:
        yield from read_builtin(source, cache)
    except OSError as error:
        ours = error.filename is None or Path(error.filename).is_relative_to(cache)
        if ours and error.errno in WRITE_FIXES:
            raise NotWritable(error.filename or cache, error) from None
        raise


def read_all(
    source: AnySource, outcome: SourceOutcome, read: Callable[[], Iterable[SourceRecord]]
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


def guarded(source: AnySource, outcome: SourceOutcome, read: Callable[[], T]) -> T | None:
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


def _why_nothing(source: AnySource, outcome: SourceOutcome, root: Path) -> str:
    """One line for NothingCollected: the source, where it reads, and why it gave nothing."""
    if isinstance(source, FolderSource):
        where = f"folder {source_folder(source, root)}"
        empty = "no " + ", ".join(source.extensions) + " files"
    elif isinstance(source, HttpSource):
        where, empty = source.url, "the API returned no records"
    else:
        where, empty = "builtin", "nothing matched `include` / `exclude_packages`"
    if outcome.errors:
        empty = f"failed (on_error: skip) and no earlier records: {outcome.errors[-1]}"
    elif outcome.refused:
        empty += f"; refused {len(outcome.refused)} entries (see the report)"
    return f"{source.name!r} ({where}): {empty}"


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


def remove_partial_snapshots(raw_dir: Path) -> list[Path]:
    """Delete what a collection that died while writing left in `raw_dir` (its temporary
    files), so that it is never taken for data nor versioned; returns what was deleted."""
    partial = sorted(raw_dir.glob(PARTIAL_GLOB))
    for path in partial:
        path.unlink(missing_ok=True)
    return partial


def write_snapshot(
    collection: Collection, raw_dir: Path, now: datetime | None = None
) -> RawSnapshot:
    """Write the collection as a new snapshot unless it equals the newest one.

    The snapshot and its report are written to temporary files and renamed only when both
    are complete, the report first: a snapshot never appears half written or without its
    report. A write that fails (a full disk, the file-size limit) removes its temporary
    files and raises NotWritable naming the snapshot."""
    remove_partial_snapshots(raw_dir)
    data = snapshot_bytes(collection.frame)
    digest = hashlib.sha256(data).hexdigest()
    latest = latest_snapshot(raw_dir)
    if latest is not None and hashlib.sha256(latest.read_bytes()).hexdigest() == digest:
        return RawSnapshot(path=latest, digest=digest, records=len(collection.frame), new=False)
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = raw_dir / f"snapshot-{stamp}.parquet"
    if path.exists() or (latest is not None and path.name <= latest.name):
        path = raw_dir / f"snapshot-{stamp}-{digest[:8]}.parquet"
    report_path = path.with_suffix(".report.json")
    report = {**collection.report, "snapshot": path.name, "sha256": digest}
    written = {  # final path: its temporary file (PARTIAL_GLOB)
        report_path: report_path.with_name(report_path.name + ".tmp"),
        path: path.with_name(path.name + ".tmp"),
    }
    try:
        raw_dir.mkdir(parents=True, exist_ok=True)
        written[path].write_bytes(data)
        written[report_path].write_text(json.dumps(report, indent=2) + "\n")
        for final, temporary in written.items():
            temporary.rename(final)  # atomic: a reader never sees half a file
    except OSError as error:
        for temporary in written.values():
            temporary.unlink(missing_ok=True)
        report_path.unlink(missing_ok=True)  # renamed before its snapshot failed to be
        raise NotWritable(path, error) from None
    return RawSnapshot(path=path, digest=digest, records=len(collection.frame), new=True)
