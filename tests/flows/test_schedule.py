"""`aigc schedule` serves the retrain flow as a deployment on a cron schedule, one at a time
(tests/flows/test_schedule_fires.py serves it for real)."""

from __future__ import annotations

from flows.retrain import retrain, scheduled_deployment


def test_deployment_carries_the_cron_timezone_project_and_concurrency_limit(tmp_path):
    deployment = scheduled_deployment(
        str(tmp_path),
        "0 3 * * *",
        "Europe/Paris",
        overrides=["train.loop.max_steps=10"],
        only=["text"],
    )
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * *", "Europe/Paris")
    assert deployment.parameters == {
        "root": str(tmp_path),
        "params_file": None,
        "overrides": ["train.loop.max_steps=10"],
        "only": ["text"],
    }
    # One run at a time; a tick that comes while one runs is cancelled, not queued.
    assert deployment.concurrency_limit == 1
    assert deployment.concurrency_options.collision_strategy == "CANCEL_NEW"
    assert deployment.flow_name == retrain.name == "retrain"
