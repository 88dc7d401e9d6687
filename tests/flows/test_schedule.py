"""`aigc schedule` serves the retrain flow as a deployment on a cron schedule, one at a time."""

from __future__ import annotations

from flows.retrain import retrain, scheduled_deployment


def test_deployment_carries_the_cron_timezone_project_and_concurrency_limit(tmp_path):
    deployment = scheduled_deployment(
        str(tmp_path), "0 3 * * *", "Europe/Paris", overrides=["train.loop.max_steps=10"]
    )
    (schedule,) = deployment.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone) == ("0 3 * * *", "Europe/Paris")
    assert deployment.parameters == {
        "root": str(tmp_path),
        "params_file": None,
        "overrides": ["train.loop.max_steps=10"],
    }
    assert deployment.concurrency_limit == 1
    assert deployment.flow_name == retrain.name == "retrain"
