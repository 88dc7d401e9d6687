"""Raw snapshots: each collection's records, one immutable parquet file, for every modality.

    snapshot = write_snapshot(collection, raw_dir, now)   # nothing new when nothing changed
    frame = read_snapshot(latest_snapshot(raw_dir))

Snapshots are `<raw>/snapshot-<UTC time>.parquet` beside their report, written once and
never modified; the clean stage reads the newest.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from aigc.data.collect import Collection
from aigc.paths import NotWritable

SNAPSHOT_GLOB = "snapshot-*.parquet"


PARTIAL_GLOB = "snapshot-*.tmp"  # a snapshot or report being written (or left by a crash)


@dataclass(frozen=True)
class RawSnapshot:
    """A reference to a raw snapshot file; `new` is False when nothing had changed."""

    path: Path
    digest: str
    records: int
    new: bool


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
