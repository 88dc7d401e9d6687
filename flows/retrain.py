"""Prefect flow `retrain`: data refresh → plan → train → evaluate → register → promote.

The whole pipeline as its users run it, by hand (`aigc run`), on a schedule
(`aigc schedule`, or `prefect deploy` with prefect.yaml) or from the Prefect UI. It is
change-aware (`aigc.retrain.plan_retrain`): when the data version, the code and the training
params are those of a version already decided, it ends as "no change"; a version registered
by a run that stopped before deciding is decided now. One run at a time per project. The
outcome (status, versions, metrics, reasons) is the run's Markdown artifact `retrain-summary`.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from aigc import runtime, timing
from aigc.config import load_params
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
from aigc.stages.promote import current_champion, rival
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
) -> RetrainSummary:
    started = time.perf_counter()
    timing.reset()  # the summary's parts are this run's
    paths = ProjectPaths.at(root)
    runtime.start(paths.work).note_children()  # Prefect's temporary server, if this run has one
    params = load_params(params_file or paths.params, overrides or [])
    timeout = 60 * params.run.lock_timeout_minutes
    with PipelineLock(paths.root, timeout, on_wait=get_run_logger().warning):
        dataset = data_refresh(str(paths.root), params=params).text
        key, existing, decided = plan(paths.root, params, dataset.version, force)
        if decided.action == NO_CHANGE:
            champion = current_champion(paths, params)
            return published(
                no_change_summary(existing, champion, dataset.version, key, decided, started)
            )
        if decided.action == TRAIN:
            trained = train(paths.root, params, dataset, key)
            evaluation = evaluate(
                paths.root, params, trained.model_uri, dataset, trained.run_id, trained.bundle_dir
            )
            challenger = register(paths.root, params, trained, evaluation, key)
        else:  # registered by a run that stopped before deciding
            challenger = existing
            evaluation = load_evaluation(paths, challenger.run_id, challenger.uri) or evaluate(
                paths.root, params, challenger.uri, dataset
            )
        champion = rival(current_champion(paths, params), challenger)
        champion_evaluation = None
        if champion is not None:
            champion_evaluation = evaluate.with_options(task_run_name="evaluate-champion")(
                paths.root, params, champion.uri, dataset
            )
        decision = promote(
            paths.root, params, challenger, evaluation, champion, champion_evaluation
        )
        champion_after = challenger if decision.promote else champion
        return published(
            decision_summary(
                challenger, champion_after, decision, evaluation.samples, key, started
            )
        )


def published(summary: RetrainSummary) -> RetrainSummary:
    """The summary, also shown in the Prefect UI as the run's Markdown artifact."""
    create_markdown_artifact(
        markdown=summary_markdown(summary),
        key=SUMMARY_ARTIFACT,
        description=f"retrain: {summary.status}, data version {summary.data_version[:12]}",
    )
    return summary


def scheduled_deployment(
    root: str,
    cron: str,
    timezone: str = "UTC",
    name: str = "aigc-retrain",
    params_file: str | None = None,
    overrides: list[str] | None = None,
):
    """The retrain flow as a deployment on a cron schedule, one run at a time."""
    from prefect.schedules import Cron

    return retrain.to_deployment(
        name=name,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"root": root, "params_file": params_file, "overrides": overrides or []},
        concurrency_limit=1,
    )
