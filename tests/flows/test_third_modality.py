"""A modality defined only in the tests (tests/modalities/sequence.py: number sequences) goes
through the retrain flow's shared steps, plan → train → evaluate → register → promote, on real
Prefect, Ray and MLflow, with no change under src/aigc; its task runs carry its name.

Slow: one Ray Train run (about 15 s) and its evaluation.
"""

from __future__ import annotations

import time

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from aigc.config import load_params
from aigc.modality import (
    chosen_modalities,
    get_modality,
    register_modality,
    unregister_modality,
)
from aigc.paths import ProjectPaths
from aigc.registry.registry import CHAMPION, by_alias, versions
from aigc.tracking import TrackingSettings
from flows.retrain import retrain_model
from tests.conftest import REPO, tiny_overrides
from tests.modalities.sequence import SEQUENCE, view, write_sequences

pytestmark = pytest.mark.slow


@flow(name="retrain-sequences")
def retrain_sequences(root: str, params, dataset):
    """The retrain flow's model steps for the sequence modality (its data is the test's)."""
    return retrain_model(
        ProjectPaths.at(root), params, SEQUENCE, dataset, False, time.perf_counter()
    )


def task_run_names(flow_run_id) -> list[str]:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        )
    return sorted(run.name for run in runs)


@pytest.fixture
def sequences():
    """The sequence modality registered for one test (the others' runs must not see it)."""
    register_modality(SEQUENCE)
    yield SEQUENCE
    unregister_modality(SEQUENCE.name)


def test_a_modality_defined_in_the_tests_goes_through_the_shared_steps(
    tmp_path, prefect_api, ray_runtime, sequences
):
    assert get_modality("sequence") is SEQUENCE and "sequence" in chosen_modalities(None)
    dataset = write_sequences(tmp_path / "labeled")
    params = load_params(
        REPO / "params.yaml",
        [*tiny_overrides(tmp_path), "train.loop.max_steps=80", "train.ray.num_workers=1"],
    )
    state = retrain_sequences(str(tmp_path), params, dataset, return_state=True)
    first = state.result()
    assert first.status == "promoted" and first.challenger_version == "1", first.reasons
    accuracy = first.challenger_metrics["sequence_accuracy"]
    assert accuracy > first.challenger_metrics["chance_accuracy"], accuracy
    names = task_run_names(state.state_details.flow_run_id)
    assert names == [
        "sequence-evaluate",
        "sequence-plan",
        "sequence-promote",
        "sequence-register",
        "sequence-train",
    ], names

    settings = TrackingSettings.of(view(params).tracking, tmp_path)
    assert [item.version for item in versions(settings, "aigc-sequence")] == ["1"]
    assert by_alias(settings, "aigc-sequence", CHAMPION).version == "1"
    again = retrain_sequences(str(tmp_path), params, dataset)
    assert again.status == "no change" and again.challenger_version == "1"
