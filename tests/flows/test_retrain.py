"""The three jobs' core on real Prefect, Ray, MLflow (sqlite) and DVC, with tiny configs.

Each outcome is forced, so each always runs: a first run from the CLI with `--set`
(→ champion; params.yaml untouched), an unchanged rerun (→ "no change"), new inbox data and a
longer budget (→ a better challenger → promoted), a rollback, a reproduction, a challenger
with a tiny budget (→ rejected), a crash between register and decide (→ the next run finishes
the decision), and a second run while one holds the lock (→ a clear message, nothing written).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.logging.handlers import APILogHandler

from aigc.config import load_params
from aigc.paths import ProjectPaths
from aigc.registry.registry import CHALLENGER, CHAMPION, by_alias, history, versions
from aigc.reproduce import ReproductionError, reproduce
from aigc.retrain import PipelineBusy, PipelineLock
from aigc.tracking import TrackingSettings
from flows.retrain import SUMMARY_ARTIFACT, retrain
from tests.conftest import make_documents, write_documents

pytestmark = pytest.mark.slow

AIGC = str(Path(sys.executable).parent / "aigc")


@pytest.fixture(scope="module")
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def aliases(settings: TrackingSettings) -> dict[str, str | None]:
    return {
        alias: getattr(by_alias(settings, "aigc-text", alias), "version", None)
        for alias in (CHAMPION, CHALLENGER)
    }


def test_champion_no_change_promotion_rollback_and_reproduction(pipeline_project, prefect):
    root, settings = pipeline_project
    params_before = (root / "params.yaml").read_bytes()
    first_run = subprocess.run(
        [AIGC, "run", "--set", "train.loop.max_steps=30", "--set", "train.model.n_embd=32"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert first_run.returncode == 0, first_run.stdout + first_run.stderr
    assert "promoted" in first_run.stdout
    assert (root / "params.yaml").read_bytes() == params_before, "a run never writes params.yaml"
    (first,) = versions(settings, "aigc-text")
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "1"}
    recorded = settings.client().get_run(first.run_id).data.params
    assert recorded["train.loop.max_steps"] == "30", "MLflow holds the effective values"

    again = retrain(root=str(root), overrides=["train.loop.max_steps=30"], only=["text"])["text"]
    assert again.status == "no change" and again.challenger_version == "1"
    assert len(versions(settings, "aigc-text")) == 1, "no change must not train or register"

    # New data and four times the budget: a clearly better challenger, always promoted.
    write_documents(root / "data" / "inbox", make_documents(30, seed=11, prefix="new"))
    # (Guards off: with 2 samples per label, label control is noise; decide's tests cover them.)
    better = retrain(
        root=str(root),
        overrides=["train.loop.max_steps=120", "registry.policy.guard_metrics={}"],
        only=["text"],
    )["text"]
    assert better.data_version != again.data_version
    assert better.challenger_version == "2" and better.status == "promoted", "\n".join(
        better.reasons
    )
    assert better.champion_metrics is not None, "the champion is re-evaluated on the same split"
    assert any("bootstrap" in reason for reason in better.reasons)
    assert aliases(settings) == {CHAMPION: "2", CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": "promoted"}

    rolled_back = subprocess.run(
        [AIGC, "registry", "rollback", "--reason", "test"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
    assert aliases(settings)[CHAMPION] == "1"
    assert history(settings, "aigc-text")[0]["kind"] == "rollback"

    # Reproduce version 1 after the data moved on: same metrics, same weights, exit 0.
    result = subprocess.run(
        [AIGC, "reproduce", "aigc-text/1"], cwd=root, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the reproduction matches" in result.stdout and "identical" in result.stdout
    runs = settings.client().search_runs(
        [settings.client().get_experiment_by_name("aigc-text").experiment_id],
        filter_string=f"tags.reproduction_of = '{first.run_id}'",
    )
    assert len(runs) == 1

    # A tampered dataset in the DVC cache (and remote): a clear error, nothing trained.
    first_data = first.tags["aigc.data_version"]
    manifest = json.loads(
        next(
            (root / ".dvc" / "cache" / "files" / "md5").rglob(first_data[2:] + ".dir")
        ).read_bytes()
    )
    train_md5 = next(entry["md5"] for entry in manifest if entry["relpath"] == "train.parquet")
    remote = Path(yaml.safe_load((root / "params.yaml").read_text())["version"]["remote_url"])
    for store in (root / ".dvc" / "cache", remote):  # a damaged cache alone is repaired by DVC
        damaged = store / "files" / "md5" / train_md5[:2] / train_md5[2:]
        damaged.chmod(0o644)
        damaged.write_bytes(damaged.read_bytes()[:-10] + b"tampered!!")
    before = len(
        settings.client().search_runs(
            [settings.client().get_experiment_by_name("aigc-text").experiment_id]
        )
    )
    with pytest.raises(ReproductionError, match="train.parquet does not match its recorded hash"):
        reproduce(ProjectPaths.at(root), load_params(root / "params.yaml"), target="aigc-text/1")
    after = len(
        settings.client().search_runs(
            [settings.client().get_experiment_by_name("aigc-text").experiment_id]
        )
    )
    assert after == before, "nothing may be trained on a tampered dataset"


def test_a_run_reports_its_progress_and_outcome_then_a_worse_challenger_is_rejected(
    pipeline_project, prefect, caplog: pytest.LogCaptureFixture
):
    """What a run tells the people watching it (progress lines in the terminal and in
    Prefect's logs, the outcome as the Markdown artifact `retrain-summary`), and a challenger
    with a tiny budget rejected with reasons."""
    root, settings = pipeline_project
    caplog.set_level(logging.INFO, logger="prefect")
    state = retrain(
        root=str(root), overrides=["train.loop.max_minutes=5"], only=["text"], return_state=True
    )
    champion = state.result()["text"]
    assert champion.status == "promoted", champion.reasons

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

    # In Prefect's logs, where the UI reads them, and the outcome as an artifact.
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
    assert f"`{champion.data_version}`" in artifact.data
    bits = champion.challenger_metrics["test_bits_per_character"]
    assert f"| test_bits_per_character | {bits:.4g} |" in artifact.data
    assert all(" ".join(reason.split()) in artifact.data for reason in champion.reasons)

    worse = retrain(root=str(root), overrides=["train.loop.max_steps=3"], only=["text"])["text"]
    assert worse.status == "rejected" and worse.challenger_version == "2"
    assert any("test_bits_per_character" in reason for reason in worse.reasons), worse.reasons
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": "rejected"}
    parts = worse.timings  # where the run's time went, for bench/pipeline.py
    assert {"collect", "clean", "label", "version", "training", "evaluation"} <= set(parts)
    assert parts["training"] > 0 and sum(parts.values()) <= worse.seconds


def test_crash_between_register_and_decide_is_finished_by_the_next_run(pipeline_project, prefect):
    from prefect.logging import disable_run_logger

    from aigc.retrain import training_key
    from flows.data_refresh import data_refresh
    from tasks.evaluate import evaluate
    from tasks.register import register
    from tasks.train import train

    root, settings = pipeline_project
    dataset = data_refresh(root=str(root)).text
    params = load_params(root / "params.yaml")
    key = training_key(dataset.version, params)
    with disable_run_logger():
        trained = train.fn(root, params, dataset, key)
        evaluation = evaluate.fn(root, params, trained.model_uri, dataset, trained.run_id)
        register.fn(root, params, trained, evaluation, key)  # ... and the process dies here
    assert aliases(settings) == {CHAMPION: None, CHALLENGER: "1"}

    summary = retrain(root=str(root), only=["text"])["text"]
    assert summary.challenger_version == "1", "the registered version is decided, not retrained"
    assert len(versions(settings, "aigc-text")) == 1
    assert summary.status == "promoted" and aliases(settings) == {CHAMPION: "1", CHALLENGER: "1"}


def test_a_second_run_waits_for_the_lock_then_ends_clearly(pipeline_project, prefect):
    root, settings = pipeline_project
    with PipelineLock(root), pytest.raises(PipelineBusy, match="another aigc run holds"):
        retrain(root=str(root), overrides=["run.lock_timeout_minutes=0.02"], only=["text"])
    assert not (root / "data" / "raw").exists(), "the waiting run must not touch data/"
    assert versions(settings, "aigc-text") == []
