"""Prefect flow `retrain`: data refresh → plan → train → evaluate → register → promote.

For each modality (text, then images; `--only` picks), on its own training key and
registered model. The whole pipeline as its users run it, by hand (`aigc run`), on a schedule
(`aigc schedule`, or `prefect deploy` with prefect.yaml) or from the Prefect UI. It is
change-aware (`aigc.retrain.plan_retrain`): when the data version, the code and the training
params are those of a version already decided, it ends as "no change"; a version registered
by a run that stopped before deciding is decided now. One run at a time per project. The
outcome (status, versions, metrics, reasons) of each modality is the run's Markdown artifact
`retrain-summary-<modality>`; the run's timing parts are named after it too ("text training").
"""

from __future__ import annotations

import time
from dataclasses import replace

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from aigc import runtime, timing
from aigc.config import Params, load_params
from aigc.errors import UserError
from aigc.modality import Modality, chosen_modalities, get_modality
from aigc.paths import ProjectPaths
from aigc.registry.decide import Decision
from aigc.registry.registry import CHALLENGER, ModelVersion, by_alias
from aigc.retrain import (
    NO_CHANGE,
    TRAIN,
    PipelineLock,
    RetrainSummary,
    decision_summary,
    no_change_summary,
    summary_markdown,
)
from aigc.stages.evaluate import Evaluation, load_evaluation
from aigc.stages.promote import current_champion, rival
from aigc.stages.version import Dataset, current_dataset
from aigc.tracking import TrackingSettings
from flows.data_refresh import data_refresh
from tasks.evaluate import evaluate
from tasks.plan import plan
from tasks.promote import promote
from tasks.register import register
from tasks.train import train


def summary_artifact(modality: str) -> str:
    """The key of a modality's Markdown artifact in Prefect: `retrain-summary-text`."""
    return f"retrain-summary-{modality}"


@flow(name="retrain", log_prints=True)
def retrain(
    root: str = ".",
    params_file: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    only: list[str] | None = None,
) -> dict[str, RetrainSummary]:
    """Each modality (text, image; `only` picks) retrained on its own key: one summary each."""
    started = time.perf_counter()
    timing.reset()  # the summary's parts are this run's
    paths = ProjectPaths.at(root)
    runtime.start(paths.work).note_children()  # Prefect's temporary server, if this run has one
    params = load_params(params_file or paths.params, overrides or [])
    modalities = chosen_modalities(only)
    timeout = 60 * params.run.lock_timeout_minutes
    with PipelineLock(paths.root, timeout, on_wait=get_run_logger().warning):
        data = data_refresh(str(paths.root), params=params, modalities=modalities)
        summaries = {}
        for name in modalities:
            modality = get_modality(name)
            with timing.scope(f"{name} "):  # its parts named apart: "image training"
                summary = retrain_model(paths, params, modality, data.of(name), force, started)
            summaries[name] = published(replace(summary, modality=name))
        return summaries


def retrain_model(
    paths: ProjectPaths,
    params: Params,
    modality: Modality,
    dataset: Dataset,
    force: bool,
    started: float,
) -> RetrainSummary:
    """plan → train → evaluate → register → evaluate-champion → promote, for one modality;
    each task run is named after it (`text-train`, `image-promote`)."""
    view = modality.view(params)  # its registered model, policy and experiment
    name = modality.name
    key, existing, decided = plan(paths.root, params, dataset.version, force, name)
    if decided.action == NO_CHANGE:
        champion = current_champion(paths, view)
        return no_change_summary(existing, champion, dataset.version, key, decided, started)
    if decided.action == TRAIN:
        trained = train(paths.root, params, dataset, key, name)
        evaluation = evaluate(
            paths.root,
            params,
            trained.model_uri,
            dataset,
            trained.run_id,
            trained.bundle_dir,
            modality=name,
        )
        challenger = register(paths.root, params, trained, evaluation, key, name)
    else:  # registered by a run that stopped before deciding
        challenger = existing
        evaluation = load_evaluation(paths, challenger.run_id, challenger.uri) or evaluate(
            paths.root, params, challenger.uri, dataset, modality=name
        )
    decision, champion_after = decide(paths, params, modality, dataset, challenger, evaluation)
    return decision_summary(challenger, champion_after, decision, evaluation.samples, key, started)


def decide(
    paths: ProjectPaths,
    params: Params,
    modality: Modality,
    dataset: Dataset,
    challenger: ModelVersion,
    evaluation: Evaluation,
) -> tuple[Decision, ModelVersion | None]:
    """evaluate-champion → promote: the champion on the challenger's test split, then the
    gate; (the decision, the champion after it). `aigc promote` runs these same steps."""
    view = modality.view(params)
    champion = rival(current_champion(paths, view), challenger)
    champion_evaluation = None
    if champion is not None:
        champion_evaluation = evaluate(
            paths.root,
            params,
            champion.uri,
            dataset,
            modality=modality.name,
            role="evaluate-champion",
        )
    decision = promote(
        paths.root, view, challenger, evaluation, champion, champion_evaluation, modality.name
    )
    return decision, challenger if decision.promote else champion


@flow(name="promote", log_prints=True)
def promote_challenger(
    root: str = ".",
    params_file: str | None = None,
    overrides: list[str] | None = None,
    modality: str = "text",
) -> Decision:
    """The gate on the modality's current challenger (`aigc promote`): the challenger and the
    champion evaluated on the current data version, then decided, as a run decides."""
    paths = ProjectPaths.at(root)
    params = load_params(params_file or paths.params, overrides or [])
    chosen = get_modality(modality)
    view = chosen.view(params)
    name = view.registry.model_name
    challenger = by_alias(TrackingSettings.of(view.tracking, paths.root), name, CHALLENGER)
    if challenger is None:
        raise UserError(f"registered model {name!r} has no challenger: run `aigc run` first")
    dataset = current_dataset(paths, chosen)
    evaluation = evaluate(paths.root, params, challenger.uri, dataset, modality=modality)
    decision, _ = decide(paths, params, chosen, dataset, challenger, evaluation)
    return decision


def published(summary: RetrainSummary) -> RetrainSummary:
    """The summary, also shown in the Prefect UI as the run's Markdown artifact."""
    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key=summary_artifact(summary.modality),
        description=f"retrain {summary.modality}: {summary.status}, data version "
        f"{summary.data_version[:12]}",
    )
    return summary


def scheduled_deployment(
    root: str,
    cron: str,
    timezone: str = "UTC",
    name: str = "aigc-retrain",
    params_file: str | None = None,
    overrides: list[str] | None = None,
    only: list[str] | None = None,
):
    """The retrain flow as a deployment on a cron schedule, one run at a time: a tick that
    comes while the previous run still runs is not queued but cancelled ("Deployment
    concurrency limit reached."), so ticks never pile up behind a long run."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    return retrain.to_deployment(
        name=name,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={
            "root": root,
            "params_file": params_file,
            "overrides": overrides or [],
            "only": only,
        },
        concurrency_limit=ConcurrencyLimitConfig(
            limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW
        ),
    )
