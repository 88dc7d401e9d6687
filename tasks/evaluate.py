"""Prefect task `evaluate`: a model on the test split of the run's data version."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Modality, Params
from aigc.paths import ProjectPaths
from aigc.stages.evaluate import Evaluation, evaluate_images
from aigc.stages.evaluate import evaluate as evaluate_text
from aigc.stages.image import ImageDataset
from aigc.stages.version import Dataset

# The figure each modality's log line leads with, and the reference beside it.
HEADLINE = {
    "text": ("test_bits_per_character", "unigram_bits_per_character"),
    "image": ("frechet_distance", "trivial_frechet_distance"),
}


@task(name="evaluate")
def evaluate(
    root: Path,
    params: Params,
    model_uri: str,
    dataset: Dataset | ImageDataset,
    record_in: str | None = None,
    bundle_dir: Path | None = None,
    modality: Modality = "text",
) -> Evaluation:
    logger = get_run_logger()
    started = time.perf_counter()
    stage = evaluate_text if modality == "text" else evaluate_images
    evaluation = stage(
        ProjectPaths.at(root),
        params,
        model_uri,
        dataset,
        record_in,
        bundle_dir,
        on_progress=logger.info,
    )
    headline, reference = HEADLINE[modality]
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
