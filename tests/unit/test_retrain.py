"""The retrain job's own logic: training key, plan, lock; and the registry's side effects on a
real MLflow sqlite store (versions created directly: the registry logic needs no model files).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aigc.config import Params, TrackingParams, load_params
from aigc.registry.decide import Decision
from aigc.registry.registry import (
    CHALLENGER,
    CHAMPION,
    DECISION_TAG,
    ModelVersion,
    RegistryError,
    apply_decision,
    by_alias,
    get_version,
    history,
    promote_manually,
    rollback,
)
from aigc.retrain import (
    DECIDE,
    NO_CHANGE,
    TRAIN,
    PipelineBusy,
    PipelineLock,
    plan_retrain,
    training_key,
)
from aigc.tracking import TrackingSettings
from tests.conftest import REPO

NAME = "aigc-text"


def version(number: str, tags: dict | None = None) -> ModelVersion:
    return ModelVersion(NAME, number, "run", "source", tags or {}, ())


def test_training_key_follows_data_and_training_params_only():
    params = load_params(REPO / "params.yaml")
    key = training_key("a" * 32, params)
    assert training_key("a" * 32, params) == key
    assert training_key("b" * 32, params) != key
    longer = load_params(REPO / "params.yaml", ["train.loop.max_steps=10"])
    assert training_key("a" * 32, longer) != key
    other_eval = load_params(REPO / "params.yaml", ["evaluate.seed=5"])
    assert training_key("a" * 32, other_eval) == key, "evaluation settings do not retrain"
    elsewhere = load_params(
        REPO / "params.yaml",
        [
            "train.ray.address=10.0.0.1:6379",
            "train.ray.storage_path=s3://ray/aigc",
            "train.ray.max_failures=0",
        ],
    )
    assert training_key("a" * 32, elsewhere) == key, "where it trains is not what it trains"


def test_plan_trains_new_keys_skips_decided_ones_and_decides_the_undecided():
    assert plan_retrain(None, force=False).action == TRAIN
    decided = version("3", {DECISION_TAG: "rejected"})
    skip = plan_retrain(decided, force=False)
    assert skip.action == NO_CHANGE and "version 3" in skip.reason and "rejected" in skip.reason
    assert plan_retrain(decided, force=True).action == TRAIN
    undecided = plan_retrain(version("4"), force=False)
    assert undecided.action == DECIDE and "version 4" in undecided.reason


HOLDER = """
import sys, time
from aigc.retrain import PipelineLock
with PipelineLock(sys.argv[1], timeout_seconds=0):  # the first holder never waits
    print("held", flush=True)
    time.sleep(60)
"""


def test_lock_waits_says_so_and_names_the_holder_then_frees_when_the_holder_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        said: list[str] = []
        started = time.monotonic()
        with (
            pytest.raises(PipelineBusy, match=f"pid {holder.pid}"),
            PipelineLock(tmp_path, timeout_seconds=0.5, poll=0.1, on_wait=said.append),
        ):
            pass
        assert time.monotonic() - started < 5
        assert len(said) == 1 and f"pid {holder.pid}" in said[0]
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with PipelineLock(tmp_path, timeout_seconds=1):  # the kernel released the dead holder's lock
        assert f"pid {os.getpid()}" in (tmp_path / ".aigc/pipeline.lock").read_text()


@pytest.fixture
def registry(tmp_path: Path) -> TrackingSettings:
    settings = TrackingSettings.of(TrackingParams(), tmp_path)
    client = settings.client()
    client.create_registered_model(NAME)
    for _ in range(3):
        created = client.create_model_version(NAME, source=str(tmp_path / "model"))
        client.set_registered_model_alias(NAME, CHALLENGER, created.version)
    return settings


def decision(promote: bool, reason: str) -> Decision:
    return Decision(promote, (reason,), {"check": promote}, {"m": 1.0}, None, {})


def test_apply_decision_moves_the_champion_only_on_promotion_and_records_both(registry):
    first, second = get_version(registry, NAME, "1"), get_version(registry, NAME, "2")
    assert (
        apply_decision(registry, first, None, decision(True, "beats the baseline")).version == "1"
    )
    after = apply_decision(registry, second, first, decision(False, "no better"))
    assert after.version == "1" and by_alias(registry, NAME, CHAMPION).version == "1"
    assert get_version(registry, NAME, "2").tags[DECISION_TAG] == "rejected"
    entries = history(registry, NAME)
    assert [(entry["version"], entry["decision"]) for entry in entries] == [
        ("2", "rejected"),
        ("1", "promoted"),
    ]
    assert entries[0]["reasons"] == ["no better"]


def test_rollback_returns_to_the_replaced_champion_and_needs_one(registry):
    first, second = get_version(registry, NAME, "1"), get_version(registry, NAME, "2")
    with pytest.raises(RegistryError, match="no champion"):
        rollback(registry, NAME)
    apply_decision(registry, first, None, decision(True, "first"))
    with pytest.raises(RegistryError, match="aigc registry promote"):
        rollback(registry, NAME)
    apply_decision(registry, second, first, decision(True, "better"))
    assert rollback(registry, NAME, "bad outputs").version == "1"
    assert by_alias(registry, NAME, CHAMPION).version == "1"
    assert history(registry, NAME)[0]["kind"] == "rollback"


def test_manual_promotion_needs_a_reason_and_is_recorded_as_manual(registry):
    with pytest.raises(RegistryError, match="--reason"):
        promote_manually(registry, NAME, "3", " ")
    promoted = promote_manually(registry, NAME, "3", "hotfix")
    assert promoted.tags[DECISION_TAG] == "promoted (manual)"
    assert by_alias(registry, NAME, CHAMPION).version == "3"
    assert history(registry, NAME)[0]["kind"] == "manual"


def test_an_empty_params_file_means_every_default(tmp_path):
    (tmp_path / "params.yaml").write_text("")
    assert load_params(tmp_path / "params.yaml").model_dump() == Params().model_dump()
