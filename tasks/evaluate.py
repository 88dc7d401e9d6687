"""Prefect task `evaluate`: a model on the test split of the run's data version."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.stages.evaluate import Evaluation
from aigc.stages.evaluate import evaluate as evaluate_stage
from aigc.stages.version import Dataset


@task(name="evaluate", task_run_name="{modality}-{role}")
def evaluate(
    root: Path,
    params: Params,
    model_uri: str,
    dataset: Dataset,
    record_in: str | None = None,
    bundle_dir: Path | None = None,
    modality: str = "text",
    role: str = "evaluate",
) -> Evaluation:
    """`role` names the run in the Prefect UI: "evaluate" (the challenger) or
    "evaluate-champion" (the champion, on the same test split)."""
    logger = get_run_logger()
    started = time.perf_counter()
    chosen = get_modality(modality)
    evaluation = evaluate_stage(
        ProjectPaths.at(root),
        params,
        model_uri,
        dataset,
        record_in,
        bundle_dir,
        on_progress=logger.info,
    )
    headline, reference = chosen.headline
    logger.info(
        "%s on data version %s: %s %.3f (%s %.3f), recorded in run %s; evaluated in %.0fs",
        model_uri,
        dataset.version[:12],
        headline,
        evaluation.metrics[headline],
        reference,
        evaluation.metrics.get(reference, float("nan")),
        evaluation.run_id,
        time.perf_counter() - started,
    )
    return evaluation
