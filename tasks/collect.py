"""Prefect task `collect`: read the sources into a new raw snapshot and track it with DVC.

No Prefect retries: the HTTP source retries its own transient failures, and nothing else
that can fail here (a missing column, a DVC error, a bad config) passes on a second try.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.modality import data_of, get_modality
from aigc.paths import ProjectPaths
from aigc.stages.collect import CollectedSnapshot
from aigc.stages.collect import collect as collect_stage


@task(name="collect", task_run_name="{modality}-collect")
def collect(root: Path, params: Params, modality: str = "text") -> CollectedSnapshot:
    chosen = get_modality(modality)
    collected = collect_stage(ProjectPaths.at(root), params, chosen)
    log_collection(collected, data_of(chosen).raw)
    return collected


def log_collection(collected: CollectedSnapshot, raw: str) -> None:
    """Per source: records, flags, errors, refusals, carried records; then the snapshot."""
    logger = get_run_logger()
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
        for entry in source.get("refused", []):
            logger.warning("refused %s: %s", entry["path"], entry["reason"])
        if source.get("carried_forward") or source.get("partial_dropped"):
            logger.warning(
                "source %s failed: kept its %d records from the previous snapshot, dropped "
                "the %d read before the failure",
                source["name"],
                source.get("carried_forward", 0),
                source.get("partial_dropped", 0),
            )
    snapshot = collected.snapshot
    state = "new snapshot" if snapshot.new else "no change since"
    logger.info("%s %s: %d records", state, snapshot.path.name, snapshot.records)
    logger.info("%s tracked by DVC: %s", raw, collected.raw_hash)
