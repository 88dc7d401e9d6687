"""Prefect task `collect`: read the sources into a new raw snapshot and version it with DVC.

The only data task that touches the network, so the only one with retries.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.data.stages import CollectedSnapshot, collect_stage
from aigc.data.version import track_raw
from aigc.paths import ProjectPaths


@task(name="collect", retries=2, retry_delay_seconds=[5, 30])
def collect(root: Path, params: Params) -> CollectedSnapshot:
    logger = get_run_logger()
    collected = collect_stage(ProjectPaths.at(root), params)
    for source in collected.report["sources"]:
        logger.info(
            "source %s (%s): %d records, flagged %s, %d errors, %.1fs",
            source["name"],
            source["type"],
            source["records"],
            source["flagged"] or "none",
            len(source["errors"]),
            source["seconds"],
        )
        for error in source["errors"]:
            logger.warning("skipped (on_error: skip): %s", error)
    snapshot = collected.snapshot
    state = "new snapshot" if snapshot.new else "no change since"
    logger.info("%s %s: %d records", state, snapshot.path.name, snapshot.records)
    raw_hash = track_raw(Path(root))
    logger.info("data/raw tracked by DVC: %s", raw_hash)
    return collected
