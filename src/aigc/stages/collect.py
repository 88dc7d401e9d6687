"""The `collect` stage: read every configured source into a new raw snapshot, tracked by DVC.

    collected = collect(paths, params)       # data/raw/snapshot-*.parquet + data/raw.dvc

Not a DVC stage: it reads the outside world, so as a stage it would leave `dvc status`
dirty for ever. Unchanged sources write no new snapshot, so the data version stays.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aigc import timing
from aigc.config import Params
from aigc.data.collect import (
    RawSnapshot,
    collect_sources,
    latest_snapshot,
    read_snapshot,
    write_snapshot,
)
from aigc.data.version import track_raw
from aigc.paths import ProjectPaths


@dataclass(frozen=True)
class CollectedSnapshot:
    snapshot: RawSnapshot
    report: dict
    raw_hash: str = ""  # DVC's hash of data/raw; empty outside a DVC project


@timing.timed("collect")
def collect(paths: ProjectPaths, params: Params, now: datetime | None = None) -> CollectedSnapshot:
    latest = latest_snapshot(paths.raw)
    previous = read_snapshot(latest) if latest else None
    collection = collect_sources(params.collect.sources, paths.root, now, previous)
    snapshot = write_snapshot(collection, paths.raw, now)
    raw_hash = track_raw(paths.root) if (paths.root / ".dvc").is_dir() else ""
    return CollectedSnapshot(snapshot=snapshot, report=collection.report, raw_hash=raw_hash)
