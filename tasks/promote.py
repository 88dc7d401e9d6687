"""Prefect task `promote`: the gate decides on the challenger and the decision is applied."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.registry.decide import Decision
from aigc.registry.registry import ModelVersion
from aigc.stages.evaluate import Evaluation
from aigc.stages.promote import promote as promote_stage


@task(name="promote", task_run_name="{modality}-promote")
def promote(
    root: Path,
    params: Params,
    challenger: ModelVersion,
    evaluation: Evaluation,
    champion: ModelVersion | None,
    champion_evaluation: Evaluation | None,
    modality: str = "text",
) -> Decision:
    """The gate on `params` as the modality's shared stages read them (`Modality.view`)."""
    decision = promote_stage(
        ProjectPaths.at(root), params, challenger, evaluation, champion, champion_evaluation
    )
    logger = get_run_logger()
    logger.info("decision: %s", "promote" if decision.promote else "keep the champion")
    for reason in decision.reasons:
        logger.info("  - %s", reason)
    return decision
