"""What a retrain run tells the people watching it, on real Prefect, Ray, MLflow and DVC.

During the run: the budgets that will stop training, progress lines with step/budget at each
tenth of it, and a line per evaluation part, in the terminal's log and in Prefect's logs (the
UI). After it: the outcome as the flow run's Markdown artifact `retrain-summary`, read back
through Prefect's client.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

# Imported here, not in the test: importing Prefect's flow machinery configures logging
# (a fresh root handler list), which would drop pytest's capture handler mid-test.
from flows.retrain import SUMMARY_ARTIFACT, retrain

pytestmark = pytest.mark.slow

TINY = [
    "train.model.block_size=32",
    "train.model.n_layer=1",
    "train.model.n_head=2",
    "train.model.n_embd=32",
    "train.tokenizer.vocab_size=320",
    "train.tokenizer.min_frequency=1",
    "train.batch_size=8",
    "train.loop.max_steps=30",
    "train.loop.max_minutes=5",  # also set: the steps stop training first, and lines say so
    "train.loop.warmup_steps=5",
    "train.loop.eval_every=10",
    "train.loop.checkpoint_every=0",
    "train.ray.num_workers=2",
    "evaluate.continuation_documents=3",
    "evaluate.samples_per_label=2",
    "evaluate.sample_tokens=16",
    "evaluate.max_new_tokens=16",
    "registry.policy.bootstrap_samples=100",
]


@pytest.fixture(scope="module")
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_a_run_logs_its_progress_and_publishes_its_summary(
    project: Path, tmp_path: Path, prefect, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="prefect")
    state = retrain(
        root=str(project),
        overrides=[
            *TINY,
            f"tracking.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"tracking.artifact_root={tmp_path}/artifacts",
            f"train.ray.storage_path={tmp_path}/ray",
        ],
        return_state=True,
    )
    summary = state.result()
    assert summary.status == "promoted", summary.reasons

    # In the terminal: what stops training, then step/budget at each tenth of the budget.
    terminal = [record.getMessage() for record in caplog.records]
    assert (
        "training until 30 steps (max_steps) or 5 minutes (max_minutes), whichever comes "
        "first" in terminal
    )
    progress = [line for line in terminal if line.startswith("train step ")]
    steps = [
        int(re.match(r"train step (\d+)/30 \(\d+%, max_steps\)", line)[1]) for line in progress
    ]
    assert len(steps) >= 3 and steps == sorted(steps) and steps[-1] == 30, progress
    shards = [line for line in terminal if line.startswith("evaluation shard ")]
    # (the tiny test split may hold fewer documents than evaluate.shards: one shard each)
    assert shards and re.match(r"evaluation shard (\d+)/\1 done after", shards[-1]), shards
    assert any(line.startswith("evaluating ") and "test documents" in line for line in terminal)

    # In Prefect's logs, where the UI reads them.
    APILogHandler().flush()  # send what is queued, as at the end of a process
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[SUMMARY_ARTIFACT]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    recorded = [log.message for log in logs]
    assert [line for line in recorded if line.startswith("train step ")] == progress
    assert [line for line in recorded if line.startswith("evaluation shard ")] == shards

    (artifact,) = artifacts
    assert artifact.type == "markdown"
    assert "| status | **promoted** |" in artifact.data
    assert f"`{summary.data_version}`" in artifact.data
    bits = summary.challenger_metrics["test_bits_per_character"]
    assert f"| test_bits_per_character | {bits:.4g} |" in artifact.data
    assert all(" ".join(reason.split()) in artifact.data for reason in summary.reasons)
