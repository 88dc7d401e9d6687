"""Prefect task `plan`: the training key, and what this run does with it (train, decide, skip)."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from aigc import timing
from aigc.config import Params
from aigc.modality import get_modality
from aigc.registry.registry import ModelVersion, find_by_key
from aigc.retrain import Plan, plan_retrain, training_key
from aigc.tracking import TrackingSettings


@task(name="plan", task_run_name="{modality}-plan")
def plan(
    root: Path, params: Params, data_version: str, force: bool, modality: str = "text"
) -> tuple[str, ModelVersion | None, Plan]:
    """(training key, the version already trained from it if any, the plan)."""
    chosen = get_modality(modality)
    with timing.timed("change check"):
        key = training_key(data_version, params, chosen, root)
        view = chosen.view(params)
        settings = TrackingSettings.of(view.tracking, root)
        existing = find_by_key(settings, view.registry.model_name, key)
    decided = plan_retrain(existing, force)
    get_run_logger().info(
        "%s training key %s: %s: %s", modality, key, decided.action, decided.reason
    )
    return key, existing, decided
