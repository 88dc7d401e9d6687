"""Prefect flow `retrain`: data refresh → plan → train → evaluate → register → promote.

For each modality (text, then images; `--only` picks), on its own training key and
registered model. The whole pipeline as its users run it, by hand (`aigc run`), on a schedule
(`aigc schedule`, or `prefect deploy` with prefect.yaml) or from the Prefect UI. It is
change-aware (`aigc.retrain.plan_retrain`): when the data version, the code and the training
params are those of a version already decided, it ends as "no change"; a version registered
by a run that stopped before deciding is decided now. One run at a time per project. The
outcome (status, versions, metrics, reasons) is the run's Markdown artifact `retrain-summary`.
"""

from __future__ import annotations

import time
from dataclasses import replace

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from aigc import runtime, timing
from aigc.config import Modality, Params, chosen_modalities, load_params
from aigc.paths import ProjectPaths
from aigc.retrain import (
    NO_CHANGE,
    TRAIN,
    PipelineLock,
    RetrainSummary,
    decision_summary,
    no_change_summary,
    summary_markdown,
)
from aigc.stages.evaluate import load_evaluation
from aigc.stages.image import ImageDataset
from aigc.stages.promote import current_champion, rival
from aigc.stages.version import Dataset
from flows.data_refresh import data_refresh
from tasks.evaluate import evaluate
from tasks.plan import plan
from tasks.promote import promote
from tasks.register import register
from tasks.train import train

SUMMARY_ARTIFACT = "retrain-summary"  # the key of the run's Markdown artifact in Prefect


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
        for modality in modalities:
            with timing.scope("" if modality == "text" else f"{modality} "):  # parts named apart
                summary = retrain_model(paths, params, modality, data.of(modality), force, started)
            summaries[modality] = published(replace(summary, modality=modality))
        return summaries


def retrain_model(
    paths: ProjectPaths,
    params: Params,
    modality: Modality,
    dataset: Dataset | ImageDataset,
    force: bool,
    started: float,
) -> RetrainSummary:
    """plan → train → evaluate → register → evaluate-champion → promote, for one modality."""
    view = params.for_modality(modality)  # its registered model, policy and experiment
    named = task_names(modality)
    key, existing, decided = plan.with_options(**named("plan"))(
        paths.root, params, dataset.version, force, modality
    )
    if decided.action == NO_CHANGE:
        champion = current_champion(paths, view)
        return no_change_summary(existing, champion, dataset.version, key, decided, started)
    if decided.action == TRAIN:
        trained = train.with_options(**named("train"))(paths.root, params, dataset, key, modality)
        evaluation = evaluate.with_options(**named("evaluate"))(
            paths.root,
            params,
            trained.model_uri,
            dataset,
            trained.run_id,
            trained.bundle_dir,
            modality,
        )
        challenger = register.with_options(**named("register"))(
            paths.root, params, trained, evaluation, key, modality
        )
    else:  # registered by a run that stopped before deciding
        challenger = existing
        evaluation = load_evaluation(
            paths, challenger.run_id, challenger.uri
        ) or evaluate.with_options(**named("evaluate"))(
            paths.root, params, challenger.uri, dataset, modality=modality
        )
    champion = rival(current_champion(paths, view), challenger)
    champion_evaluation = None
    if champion is not None:
        champion_evaluation = evaluate.with_options(**named("evaluate-champion"))(
            paths.root, params, champion.uri, dataset, modality=modality
        )
    decision = promote.with_options(**named("promote"))(
        paths.root, view, challenger, evaluation, champion, champion_evaluation
    )
    champion_after = challenger if decision.promote else champion
    return decision_summary(challenger, champion_after, decision, evaluation.samples, key, started)


def task_names(modality: Modality):
    """Task run names in the Prefect UI: text's as they always were, images' `image_<name>`
    (as the image data tasks)."""

    def named(name: str) -> dict[str, str]:
        return (
            {}
            if modality == "text" and name != "evaluate-champion"
            else {"task_run_name": name if modality == "text" else f"image_{name}"}
        )

    return named


def published(summary: RetrainSummary) -> RetrainSummary:
    """The summary, also shown in the Prefect UI as the run's Markdown artifact."""
    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key=SUMMARY_ARTIFACT if summary.modality == "text" else f"{SUMMARY_ARTIFACT}-image",
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
