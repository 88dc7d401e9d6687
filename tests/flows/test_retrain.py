"""The three jobs' core on real Prefect, Ray, MLflow (sqlite) and DVC, with tiny configs.

Slow: every test but the lock's trains on Ray Train (about 20 s a run, mostly Ray Train's own
start). They start from `trained_project`: a project whose first text champion was trained
once per test process, a weak one (8 steps), restored afresh for each test. Every outcome is
forced, so each always runs: an unchanged rerun (→ "no change"), new data at the tiny budget
(→ a better challenger, promoted by the gate's bootstrap), a rollback and a reproduction of
version 1 after the data moved on, a challenger held to a policy it cannot meet (→ rejected,
with what the run told its watchers), a crash between register and decide (→ the next run
finishes the decision), and a second run while one holds the lock (→ a clear message,
nothing written).
"""

from __future__ import annotations

import json
import logging
import re
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
from tests.conftest import (
    WEAK_CHAMPION,
    aigc_in_process,
    git,
    make_documents,
    write_documents,
)

pytestmark = pytest.mark.slow


def aliases(settings: TrackingSettings) -> dict[str, str | None]:
    return {
        alias: getattr(by_alias(settings, "aigc-text", alias), "version", None)
        for alias in (CHAMPION, CHALLENGER)
    }


def test_the_weak_first_champion_was_trained_as_asked(trained_project):
    """What the session's first run left: version 1, champion, trained on the --set budget."""
    root, settings, first = trained_project
    (version,) = versions(settings, "aigc-text")
    assert first.status == "promoted" and aliases(settings) == {CHAMPION: "1", CHALLENGER: "1"}
    recorded = settings.client().get_run(version.run_id)
    assert recorded.data.params["train.loop.max_steps"] == WEAK_CHAMPION.split("=")[1]
    assert recorded.data.tags["aigc.steps"] == "8", "trained on the effective budget"
    assert git(root, "status", "--porcelain", "params.yaml") == "", "never written back"


def test_an_unchanged_rerun_trains_nothing(trained_project):
    root, settings, first = trained_project
    again = retrain(root=str(root), overrides=[WEAK_CHAMPION], only=["text"])["text"]
    assert again.status == "no change" and again.challenger_version == "1"
    assert again.data_version == first.data_version
    assert len(versions(settings, "aigc-text")) == 1, "no change must not train or register"


def test_new_data_promotes_a_better_challenger_then_rollback_and_reproduction(trained_project):
    root, settings, first = trained_project
    # New data, the project's own (tiny) budget: far better than 8 steps, promoted.
    write_documents(root / "data" / "inbox", make_documents(30, seed=11, prefix="new"))
    better = retrain(root=str(root), only=["text"])["text"]
    assert better.data_version != first.data_version
    assert better.challenger_version == "2" and better.status == "promoted", better.reasons
    assert better.champion_metrics is not None, "the champion is re-evaluated on the same split"
    assert any("bootstrap" in reason for reason in better.reasons), better.reasons
    assert aliases(settings) == {CHAMPION: "2", CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": "promoted"}

    rolled_back = aigc_in_process(root, "registry", "rollback", "--reason", "test")
    assert rolled_back.exit_code == 0, rolled_back.output
    assert aliases(settings)[CHAMPION] == "1"
    assert history(settings, "aigc-text")[0]["kind"] == "rollback"

    # Reproduce version 1 after the data moved on: same metrics, same weights, exit 0.
    result = aigc_in_process(root, "reproduce", "aigc-text/1")
    assert result.exit_code == 0, result.output
    assert "the reproduction matches" in result.output and "identical" in result.output
    (version,) = [item for item in versions(settings, "aigc-text") if item.version == "1"]
    runs = settings.client().search_runs(
        [settings.client().get_experiment_by_name("aigc-text").experiment_id],
        filter_string=f"tags.reproduction_of = '{version.run_id}'",
    )
    assert len(runs) == 1

    # A tampered dataset in the DVC cache (and remote): a clear error, nothing trained.
    manifest = json.loads(
        next(
            (root / ".dvc" / "cache" / "files" / "md5").rglob(first.data_version[2:] + ".dir")
        ).read_bytes()
    )
    train_md5 = next(entry["md5"] for entry in manifest if entry["relpath"] == "train.parquet")
    remote = Path(yaml.safe_load((root / "params.yaml").read_text())["version"]["remote_url"])
    for store in (root / ".dvc" / "cache", remote):  # a damaged cache alone is repaired by DVC
        damaged = store / "files" / "md5" / train_md5[:2] / train_md5[2:]
        damaged.chmod(0o644)
        damaged.write_bytes(damaged.read_bytes()[:-10] + b"tampered!!")
    experiment = settings.client().get_experiment_by_name("aigc-text").experiment_id
    before = len(settings.client().search_runs([experiment]))
    with pytest.raises(ReproductionError, match="train.parquet does not match its recorded hash"):
        reproduce(ProjectPaths.at(root), load_params(root / "params.yaml"), target="aigc-text/1")
    assert len(settings.client().search_runs([experiment])) == before, "nothing trained"


def test_a_challenger_held_to_a_policy_it_cannot_meet_is_rejected_and_the_run_says_so(
    trained_project, caplog: pytest.LogCaptureFixture
):
    """What a run tells the people watching it (progress lines in the terminal and in
    Prefect's logs, the outcome as the Markdown artifact `retrain-summary`), for a challenger
    better than the champion but not by the 90 % the policy asks: rejected, with reasons."""
    root, settings, _ = trained_project
    caplog.set_level(logging.INFO, logger="prefect")
    state = retrain(
        root=str(root),
        overrides=["train.loop.max_minutes=5", "registry.policy.min_relative_improvement=0.9"],
        only=["text"],
        return_state=True,
    )
    worse = state.result()["text"]
    assert worse.status == "rejected" and worse.challenger_version == "2"
    assert any("relative improvement" in reason for reason in worse.reasons), worse.reasons
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": "rejected"}

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
    assert "| status | **rejected** |" in artifact.data
    assert f"`{worse.data_version}`" in artifact.data
    bits = worse.challenger_metrics["test_bits_per_character"]
    assert f"| test_bits_per_character | {bits:.4g} |" in artifact.data
    assert all(" ".join(reason.split()) in artifact.data for reason in worse.reasons)
    parts = worse.timings  # where the run's time went, for bench/pipeline.py
    assert {"collect", "clean", "label", "version", "training", "evaluation"} <= set(parts)
    assert parts["training"] > 0 and sum(parts.values()) <= worse.seconds


def test_crash_between_register_and_decide_is_finished_by_the_next_run(trained_project):
    from prefect.logging import disable_run_logger

    from aigc.retrain import training_key
    from flows.data_refresh import data_refresh
    from tasks.evaluate import evaluate
    from tasks.register import register
    from tasks.train import train

    root, settings, _ = trained_project
    write_documents(root / "data" / "inbox", make_documents(20, seed=5, prefix="late"))
    dataset = data_refresh(root=str(root)).text
    params = load_params(root / "params.yaml")
    key = training_key(dataset.version, params)
    with disable_run_logger():
        trained = train.fn(root, params, dataset, key)
        evaluation = evaluate.fn(root, params, trained.model_uri, dataset, trained.run_id)
        register.fn(root, params, trained, evaluation, key)  # ... and the process dies here
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "2"}

    summary = retrain(root=str(root), only=["text"])["text"]
    assert summary.challenger_version == "2", "the registered version is decided, not retrained"
    assert len(versions(settings, "aigc-text")) == 2
    assert summary.status == "promoted" and aliases(settings) == {CHAMPION: "2", CHALLENGER: "2"}


def test_a_second_run_waits_for_the_lock_then_ends_clearly(pipeline_project, prefect_api):
    root, settings = pipeline_project
    with PipelineLock(root), pytest.raises(PipelineBusy, match="another aigc run holds"):
        retrain(root=str(root), overrides=["run.lock_timeout_minutes=0.02"], only=["text"])
    assert not (root / "data" / "raw").exists(), "the waiting run must not touch data/"
    assert versions(settings, "aigc-text") == []
