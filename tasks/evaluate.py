"""Prefect task `evaluate`: a model on the test split of the run's data version (Ray)."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.stages.evaluate import Evaluation
from aigc.stages.evaluate import evaluate as evaluate_stage
from aigc.stages.version import Dataset


@task(name="evaluate")
def evaluate(
    root: Path,
    params: Params,
    model_uri: str,
    dataset: Dataset,
    record_in: str | None = None,
    bundle_dir: Path | None = None,
) -> Evaluation:
    logger = get_run_logger()
    started = time.perf_counter()
    evaluation = evaluate_stage(
        ProjectPaths.at(root),
        params,
        model_uri,
        dataset,
        record_in,
        bundle_dir,
        on_progress=logger.info,
    )
    metrics = evaluation.metrics
    logger.info(
        "%s on data version %s: test bits/char %.3f (unigram %.3f), recorded in run %s; "
        "evaluated in %.0fs",
        model_uri,
        dataset.version[:12],
        metrics["test_bits_per_character"],
        metrics.get("unigram_bits_per_character", float("nan")),
        evaluation.run_id,
        time.perf_counter() - started,
    )
    return evaluation
