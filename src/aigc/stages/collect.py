"""The `collect` stage: read a modality's sources into a new raw snapshot, tracked by DVC.

    collected = collect(paths, params, TEXT)     # data/raw/snapshot-*.parquet + data/raw.dvc
    collected = collect(paths, params, IMAGE)    # data/image/raw/…, data/image/raw.dvc

Not a DVC stage: it reads the outside world, so as a stage it would leave `dvc status`
dirty for ever. Unchanged sources write no new snapshot, so the data version stays. The
modality reads its sources (`collect_records`: aigc.text.collect, aigc.image.collect).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aigc import timing
from aigc.config import Params
from aigc.data.snapshots import RawSnapshot, latest_snapshot, read_snapshot, write_snapshot
from aigc.data.version import track_raw
from aigc.modality import Modality, data_of
from aigc.paths import ProjectPaths


@dataclass(frozen=True)
class CollectedSnapshot:
    snapshot: RawSnapshot
    report: dict
    raw_hash: str = ""  # DVC's hash of the raw folder; empty outside a DVC project


def collect(
    paths: ProjectPaths, params: Params, modality: Modality, now: datetime | None = None
) -> CollectedSnapshot:
    layout = data_of(modality)
    raw_dir = paths.data(layout).raw
    with timing.timed("collect"):
        latest = latest_snapshot(raw_dir)
        previous = read_snapshot(latest) if latest else None
        sources = modality.data_section(params).collect.sources
        collection = modality.collect_records(sources, paths.root, now, previous)
        snapshot = write_snapshot(collection, raw_dir, now)
        raw_hash = track_raw(paths.root, layout) if (paths.root / ".dvc").is_dir() else ""
    return CollectedSnapshot(snapshot=snapshot, report=collection.report, raw_hash=raw_hash)
