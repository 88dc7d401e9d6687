"""Prefect flow `retrain`: data refresh → train → evaluate → register → promote.

The whole pipeline as its users run it, by hand (`aigc run`), on a schedule
(`aigc schedule`, or `prefect deploy` with prefect.yaml) or from the Prefect UI. It is
change-aware: when the data version, the code and the training params are those of a model
version already registered and decided, it ends as "no change" without training (`force`
retrains anyway). A version registered by a run that crashed before deciding is decided
now rather than trained again. One run at a time per project (a file lock).
"""

from __future__ import annotations

import time

from prefect import flow

from aigc.config import load_params
from aigc.paths import ProjectPaths
from aigc.pipeline import PipelineLock, RetrainSummary, no_change_summary, retrain_summary
from aigc.train.stage import Dataset
from flows.data_refresh import data_refresh
from tasks.changes import check_changes
from tasks.promote import evaluate_champion, promote
from tasks.register import register
from tasks.train import train


@flow(name="retrain", log_prints=True)
def retrain(
    root: str = ".",
    params_file: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
) -> RetrainSummary:
    started = time.perf_counter()
    paths = ProjectPaths.at(root)
    timeout = load_params(params_file or paths.params, overrides or []).run.lock_timeout_minutes
    with PipelineLock(paths.root, timeout_seconds=60 * timeout):
        labeled = data_refresh(str(paths.root), params_file, overrides)
        params = load_params(paths.params)  # what data_refresh wrote for DVC
        dataset = Dataset(paths.labeled, labeled.version)
        key, existing = check_changes(paths.root, params, labeled.version)
        if existing is not None and existing.decided and not force:
            return no_change_summary(paths, params, existing, labeled.version, key, started)
        trained = None
        if existing is not None and not force:
            challenger = existing  # registered by a run that stopped before deciding
        else:
            trained = train(paths.root, params, key)
            challenger = register(paths.root, params, trained, key)
        champion = evaluate_champion(paths.root, params, challenger, dataset)
        decision = promote(paths.root, params, challenger, dataset, champion)
        return retrain_summary(paths, params, challenger, decision, trained, key, started)


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
