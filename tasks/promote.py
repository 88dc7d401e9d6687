"""Prefect tasks `evaluate_champion` and `promote`: score both on the same split, decide, apply.

The champion is re-evaluated on the current test split, never compared through numbers
measured on another data version. `decide` is pure (aigc.registry.decide); `apply_decision`
records it and moves the alias.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.pipeline import load_scorecard, scorecard
from aigc.registry.decide import Decision, Scorecard, decide
from aigc.registry.registry import CHAMPION, ModelVersion, apply_decision, by_alias
from aigc.train.stage import Dataset, evaluate_stage, tracking_settings


@task(name="evaluate-champion")
def evaluate_champion(
    root: Path, params: Params, challenger: ModelVersion, dataset: Dataset
) -> Scorecard | None:
    """The champion's scorecard on the challenger's data, or None without a champion."""
    paths = ProjectPaths.at(root)
    champion = by_alias(tracking_settings(paths, params), challenger.name, CHAMPION)
    if champion is None or champion.version == challenger.version:
        get_run_logger().info("no champion yet: the challenger is judged against the baseline")
        return None
    report, run_id = evaluate_stage(paths, params, champion.uri, dataset)
    get_run_logger().info(
        "champion version %s re-evaluated on data version %s: test bits/char %.3f",
        champion.version,
        dataset.version[:12],
        report.metrics["test_bits_per_character"],
    )
    return scorecard(report, champion.name, champion.version, run_id)


@task(name="promote")
def promote(
    root: Path,
    params: Params,
    challenger: ModelVersion,
    dataset: Dataset,
    champion_card: Scorecard | None,
) -> Decision:
    paths = ProjectPaths.at(root)
    settings = tracking_settings(paths, params)
    challenger_card = load_scorecard(
        paths.evaluation(challenger.run_id),
        challenger.name,
        challenger.version,
        challenger.run_id,
    )
    if challenger_card is None:  # e.g. a run that crashed before deciding, on another machine
        report, run_id = evaluate_stage(paths, params, challenger.uri, dataset)
        challenger_card = scorecard(report, challenger.name, challenger.version, run_id)
    decision = decide(challenger_card, champion_card, params.registry.policy)
    champion = by_alias(settings, challenger.name, CHAMPION)
    apply_decision(settings, challenger, champion, decision)
    logger = get_run_logger()
    logger.info("decision: %s", "promote" if decision.promote else "keep the champion")
    for reason in decision.reasons:
        logger.info("  - %s", reason)
    return decision
