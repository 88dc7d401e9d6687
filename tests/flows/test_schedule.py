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


def test_sqlalchemy_is_pinned_below_2_1_which_breaks_prefects_scheduler():
    # With SQLAlchemy 2.1, Prefect 3.8.8's scheduler service fails on every tick ("Can't
    # evaluate bulk DML statement") and a served schedule never runs; seen here by hand.
    import sqlalchemy

    major, minor = (int(part) for part in sqlalchemy.__version__.split(".")[:2])
    assert (major, minor) < (2, 1), f"SQLAlchemy {sqlalchemy.__version__}: pin it below 2.1"
