"""The three jobs' core on real Prefect, Ray, MLflow (sqlite) and DVC, with tiny configs.

Slow: the tests train on Ray Train (about 12 s a run to start and end, with evaluation on
Ray). They start from `trained_project`: a project whose first text champion was trained
once per test process by every stage's task in pipeline order (`task.fn()`), a weak one (8
steps), restored afresh for each test. Every outcome is forced, so each always runs: the
first run's tasks each hand the next its input; an unchanged rerun (→ "no change"); new data
at the tiny budget (→ a better challenger, promoted by the gate's bootstrap, with what the run
told its watchers), a rollback and a reproduction of version 1 after the data moved on; a
crash between register and decide (→ the next run decides, here held to a policy the
challenger cannot meet: rejected); a second run while one holds the lock (→ a clear message,
nothing written); a schedule whose ticks each start a run (Prefect's own server, started and
stopped by `aigc schedule`). Bring your own model, on the same project (so that it is trained
once per process: every test that needs it lives in this file): a tiny GPT-2 folder made with
transformers (tests/hf_models.py; nothing is downloaded) through the retrain job as family hf
(trained, evaluated, registered, decided, shown with its base, served from a fresh process,
"no change" again, reproduced, refused once the base changed), and the built-in champion
exported with `aigc export` and loaded by transformers' pipeline.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import signal
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
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.logging.handlers import APILogHandler

from aigc.config import load_params
from aigc.paths import ProjectPaths
from aigc.registry.registry import CHALLENGER, CHAMPION, by_alias, history, versions
from aigc.reproduce import ReproductionError, reproduce
from aigc.retrain import NO_CHANGE, TRAIN, PipelineBusy, PipelineLock, training_key
from aigc.tracking import TrackingSettings, load_generator
from flows.retrain import retrain, summary_artifact
from tests.conftest import (
    WEAK_CHAMPION,
    aigc_in_process,
    git,
    make_documents,
    write_documents,
)
from tests.flows.scheduled import (
    NAME,
    Schedule,
    schedule_runs,
    summary_of,
)
from tests.hf_models import tiny_gpt2
from tests.unit.test_tracking import FRESH_PROCESS

pytestmark = pytest.mark.slow


def aliases(settings: TrackingSettings) -> dict[str, str | None]:
    return {
        alias: getattr(by_alias(settings, "aigc-text", alias), "version", None)
        for alias in (CHAMPION, CHALLENGER)
    }


def test_each_task_of_the_first_run_hands_the_next_its_input(trained_project):
    root, settings, first = trained_project
    assert first.collected.snapshot.new and first.collected.snapshot.records == 60
    assert first.collected.raw_hash
    assert first.cleaned.records + first.cleaned.quarantined == 60
    assert first.labeled.counts["records"] == first.cleaned.records
    assert len(first.dataset.version) == 32
    remote = Path(yaml.safe_load((root / "params.yaml").read_text())["version"]["remote_url"])
    assert any(remote.rglob("*")), "the version was pushed to the remote"
    key, existing, decided = first.plan
    assert existing is None and decided.action == TRAIN
    assert first.trained.steps == 8 and first.trained.data_version == first.dataset.version
    assert first.evaluation.run_id == first.trained.run_id
    metrics = first.evaluation.metrics
    assert metrics["test_bits_per_character"] < metrics["unigram_bits_per_character"]
    assert first.challenger.version == "1" and first.challenger.tags["aigc.training_key"] == key
    assert first.decision.promote, first.decision.reasons
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "1"}
    assert first.plan_after[2].action == NO_CHANGE
    recorded = settings.client().get_run(first.trained.run_id)
    assert recorded.data.params["train.loop.max_steps"] == WEAK_CHAMPION.split("=")[1]
    assert git(root, "status", "--porcelain", "params.yaml") == "", "never written back"


def test_an_unchanged_rerun_trains_nothing(trained_project):
    root, settings, first = trained_project
    again = retrain(root=str(root), overrides=[WEAK_CHAMPION], only=["text"])["text"]
    assert again.status == "no change" and again.challenger_version == "1"
    assert again.data_version == first.dataset.version
    assert len(versions(settings, "aigc-text")) == 1, "no change must not train or register"


def test_new_data_promotes_a_better_challenger_then_rollback_and_reproduction(
    trained_project, caplog: pytest.LogCaptureFixture
):
    """New data at the project's own (tiny) budget: far better than 8 steps, promoted; what
    the run tells the people watching it (progress lines in the terminal and in Prefect's
    logs, the outcome as the Markdown artifact `retrain-summary-text`); then a rollback, and
    version 1 rebuilt from its data version after the data moved on."""
    root, settings, first = trained_project
    caplog.set_level(logging.INFO, logger="prefect")
    write_documents(root / "data" / "inbox", make_documents(30, seed=11, prefix="new"))
    state = retrain(
        root=str(root), overrides=["train.loop.max_minutes=5"], only=["text"], return_state=True
    )
    better = state.result()["text"]
    assert better.data_version != first.dataset.version
    assert better.challenger_version == "2" and better.status == "promoted", better.reasons
    assert better.champion_metrics is not None, "the champion is re-evaluated on the same split"
    assert any("bootstrap" in reason for reason in better.reasons), better.reasons
    assert aliases(settings) == {CHAMPION: "2", CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": "promoted"}
    check_what_the_run_told(state, better, caplog)

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
            (root / ".dvc" / "cache" / "files" / "md5").rglob(first.dataset.version[2:] + ".dir")
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


def check_what_the_run_told(state, summary, caplog: pytest.LogCaptureFixture) -> None:
    """In the terminal: what stops training, then step/budget as it goes, up to the last; the
    same lines in Prefect's logs, where the UI reads them; the outcome as an artifact."""
    terminal = [record.getMessage() for record in caplog.records]
    assert (
        "training until 30 steps (max_steps) or 5 minutes (max_minutes), whichever comes "
        "first" in terminal
    )
    progress = [line for line in terminal if line.startswith("train step ")]
    steps = [
        int(re.match(r"train step (\d+)/30 \(\d+%, max_steps\)", line)[1]) for line in progress
    ]
    # (rank 0 sends progress at most every 0.25 s: a fast run shows only its ends)
    assert len(steps) >= 2 and steps == sorted(steps) and steps[-1] == 30, progress
    shards = [line for line in terminal if line.startswith("evaluation shard ")]
    # (the tiny test split may hold fewer documents than evaluate.shards: one shard each)
    assert shards and re.match(r"evaluation shard (\d+)/\1 done after", shards[-1]), shards
    assert any(line.startswith("evaluating ") and "test documents" in line for line in terminal)

    APILogHandler().flush()  # send what is queued, as at the end of a process
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[summary_artifact("text")]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
            )
        )
    recorded = [log.message for log in logs]
    assert [line for line in recorded if line.startswith("train step ")] == progress
    assert [line for line in recorded if line.startswith("evaluation shard ")] == shards
    (artifact,) = artifacts
    assert artifact.type == "markdown"
    assert f"| status | **{summary.status}** |" in artifact.data
    assert f"`{summary.data_version}`" in artifact.data
    bits = summary.challenger_metrics["test_bits_per_character"]
    assert f"| test_bits_per_character | {bits:.4g} |" in artifact.data
    assert all(" ".join(reason.split()) in artifact.data for reason in summary.reasons)
    parts = summary.timings  # where the run's time went, for bench/pipeline.py
    stages = ("collect", "clean", "label", "version", "training", "evaluation")
    assert {f"text {stage}" for stage in stages} <= set(parts)
    assert parts["text training"] > 0 and sum(parts.values()) <= summary.seconds


def test_crash_between_register_and_decide_is_decided_by_the_next_run_under_its_policy(
    trained_project,
):
    """A challenger registered by a run that died before deciding is decided, not retrained,
    by the next run, under that run's policy: here 90 % better than the champion, which it is
    not (better, by the bootstrap, yet rejected, with the reason)."""
    from prefect.logging import disable_run_logger

    from aigc.retrain import training_key
    from flows.data_refresh import data_refresh
    from tasks.evaluate import evaluate
    from tasks.register import register
    from tasks.train import train

    root, settings, _ = trained_project
    write_documents(root / "data" / "inbox", make_documents(20, seed=5, prefix="late"))
    dataset = data_refresh(root=str(root), modalities=("text",)).of("text")
    params = load_params(root / "params.yaml")
    key = training_key(dataset.version, params)
    with disable_run_logger():
        trained = train.fn(root, params, dataset, key)
        evaluation = evaluate.fn(root, params, trained.model_uri, dataset, trained.run_id)
        register.fn(root, params, trained, evaluation, key)  # ... and the process dies here
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "2"}

    policy = "registry.policy.min_relative_improvement=0.9"
    summary = retrain(root=str(root), overrides=[policy], only=["text"])["text"]
    assert summary.challenger_version == "2", "the registered version is decided, not retrained"
    assert len(versions(settings, "aigc-text")) == 2
    assert summary.status == "rejected", summary.reasons
    assert any("test_bits_per_character improved" in reason for reason in summary.reasons)
    assert any("short of the required 90" in reason for reason in summary.reasons), summary.reasons
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": "rejected"}


def test_a_second_run_waits_for_the_lock_then_ends_clearly(pipeline_project, prefect_api):
    root, settings = pipeline_project
    with (
        PipelineLock(root, timeout_seconds=0),
        pytest.raises(PipelineBusy, match="another aigc run holds"),
    ):
        retrain(root=str(root), overrides=["run.lock_timeout_minutes=0.02"], only=["text"])
    assert not (root / "data" / "raw").exists(), "the waiting run must not touch data/"
    assert versions(settings, "aigc-text") == []


# A tick every 5 s: a run here takes 6 to 10 s, so the ticks during it are cancelled and the
# second run starts at the first tick after the first one ends, not up to 15 s later.
EVERY_5_SECONDS = "* * * * * */5"  # Prefect's cron takes croniter's sixth field, seconds


def test_a_schedule_starts_a_run_at_each_tick_then_stops_with_nothing_left(trained_project):
    """`aigc schedule` on the embedded default, a real process: it starts a Prefect server of
    its own (Prefect's temporary API runs no scheduler), a cron that ticks every 5 s starts a
    run at each tick, one at a time (a tick during a run is cancelled, not queued), each here
    finding nothing changed; SIGTERM, as `timeout` or a service manager sends it, stops the
    runner and the server, leaving nothing running or listening."""
    root, settings, _ = trained_project
    command = Schedule(
        root, root.parent / "schedule.log",
        "--cron", EVERY_5_SECONDS, "--name", NAME, "--only", "text", "--set", WEAK_CHAMPION,
    )  # fmt: skip
    try:
        url, port, server_pid = command.wait_for("server", command.server, timeout=150)
        record = json.loads((root / ".aigc" / "run" / f"{command.process.pid}.json").read_text())
        assert server_pid in {entry["pid"] for entry in record["processes"]}, "not recorded"

        def two_completed() -> list[FlowRun] | None:
            done = [run for run in schedule_runs(url) if run.state_type == StateType.COMPLETED]
            return done if len(done) >= 2 else None

        first, second = command.wait_for("two completed ticks", two_completed, timeout=300)[:2]
        runs = schedule_runs(url)
        summaries = [summary_of(url, first), summary_of(url, second)]  # while the server runs
        assert command.stop(signal.SIGTERM) == 0, command.text()
    finally:
        command.end()

    # Created by the schedule, 5 s apart, one at a time: a tick that came while a run ran
    # was cancelled by the deployment's concurrency limit, not queued.
    assert all(run.auto_scheduled for run in runs)
    ticks = [run.expected_start_time.timestamp() for run in runs]
    assert all(round(later - earlier) % 5 == 0 for earlier, later in itertools.pairwise(ticks))
    ran = [run for run in runs if run.run_count > 0]  # those that reached RUNNING
    for earlier, later in itertools.pairwise(ran):
        assert earlier.end_time is not None and earlier.end_time <= later.start_time
    for run in runs:
        if run.state_type == StateType.CANCELLED:
            assert run.run_count == 0 and "concurrency limit" in run.state.message, run.state
    assert all(summary.startswith("retrain text: no change") for summary in summaries)
    assert [version.version for version in versions(settings, "aigc-text")] == ["1"]

    output = command.text()
    assert "never awaited" not in output and "Traceback" not in output, output
    assert "All deployments have been paused" in output  # the runner's own shutdown ran
    assert server_pid in {pid for pid, _ in command.started}  # what it started was seen
    command.assert_nothing_left(port)
    assert not (root / ".aigc" / "run" / f"{command.process.pid}.json").exists()


# --- bring your own model: a Hugging Face base in, a Hugging Face folder out ---------------

BASE = "models/gpt2-tiny"  # relative: a project's own folder, as a user would keep it
HF = f"train.model={{family: hf, path: {BASE}, block_size: 32}}"


def served_like_any_text_model(root, settings, label: str) -> None:
    """The registered fine-tune as MLflow serves it: a pyfunc loaded in a fresh process
    (transformers imported there), answering as aigc's own generator does."""
    frame = {"prompt": ["The", "A"], "label": [label, None], "max_new_tokens": [8, 8]}
    frame |= {"temperature": [0.8, 0.8], "seed": [2, 2]}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, "models:/aigc-text/2", json.dumps(frame)],
        cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served, _ = json.loads(result.stdout.strip().splitlines()[-1])
    generator = load_generator("models:/aigc-text/2", settings)
    assert served == generator.generate(
        frame["prompt"], [label, None], max_new_tokens=8, temperature=0.8, seed=2
    )


def test_a_pretrained_gpt2_fine_tunes_through_the_retrain_job(trained_project):
    root, settings, first = trained_project
    tiny_gpt2(root / BASE)

    fine_tuned = retrain(root=str(root), overrides=[HF], only=["text"])["text"]
    assert fine_tuned.challenger_version == "2", fine_tuned.reasons
    assert fine_tuned.status in ("promoted", "rejected") and fine_tuned.reasons
    (version,) = [item for item in versions(settings, "aigc-text") if item.version == "2"]
    assert version.tags["aigc.family"] == "hf"
    assert version.tags["aigc.base_model.architecture"] == "GPT2LMHeadModel"
    assert version.tags["aigc.base_model.path"] == str((root / BASE).resolve())
    sha = version.tags["aigc.base_model.sha256"]
    run = settings.client().get_run(version.run_id)
    assert (
        run.data.metrics["test_bits_per_character"]
        < run.data.metrics["unigram_bits_per_character"]
    )

    shown = aigc_in_process(root, "registry", "show")
    assert shown.exit_code == 0 and "GPT2LMHeadModel" in shown.output and sha[:12] in shown.output

    label = sorted(first.labeled.counts["labels"])[0]
    sampled = aigc_in_process(
        root, "generate", "--model-uri", "models:/aigc-text/2", "--label", label, "-n", "2"
    )
    assert sampled.exit_code == 0 and sampled.output.strip(), sampled.output
    served_like_any_text_model(root, settings, label)

    again = retrain(root=str(root), overrides=[HF], only=["text"])["text"]
    assert again.status == "no change" and again.challenger_version == "2"

    reproduced = aigc_in_process(root, "reproduce", "aigc-text/2")
    assert reproduced.exit_code == 0, reproduced.output
    assert "identical" in reproduced.output

    # Another base (same architecture, other weights) is another model: a new training key,
    # and version 2 can no longer be reproduced from it.
    params = load_params(root / "params.yaml", [HF])
    before = training_key(first.dataset.version, params, "text", root)
    tiny_gpt2(root / BASE, seed=1)
    assert training_key(first.dataset.version, params, "text", root) != before
    refused = aigc_in_process(root, "reproduce", "aigc-text/2")
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip()
    assert "\n" not in line and "Traceback" not in line, refused.output
    assert sha in line and "has changed" in line
    assert yaml.safe_load((root / "params.yaml").read_text())["train"]["model"].get("family") in (
        None,
        "gpt",
    ), "never written back"


CHAMPION_URI = "models:/aigc-text@champion"


def test_the_exported_champion_generates_as_aigc_generate(trained_project, tmp_path: Path):
    from transformers import pipeline

    root, settings, _ = trained_project
    out = tmp_path / "champion-hf"
    result = aigc_in_process(root, "export", CHAMPION_URI, str(out))
    assert result.exit_code == 0, result.output
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md"} <= {
        path.name for path in out.iterdir()
    }
    generator = load_generator(CHAMPION_URI, settings)
    assert generator.family == "gpt"
    generate = pipeline("text-generation", model=str(out))
    new_tokens = generator.config.block_size - 2  # the prompt: end of text, label
    tokenizer = generator.tokenizer
    continuations = []
    for label, token in zip(tokenizer.labels, tokenizer.label_tokens(), strict=True):
        ours = generator.generate([""], [label], temperature=0, max_new_tokens=new_tokens)[0]
        theirs = generate(
            tokenizer.eos_token + token,
            do_sample=False,
            max_new_tokens=new_tokens,
            return_full_text=False,
        )[0]["generated_text"]
        assert theirs == ours, label
        continuations.append(ours)
    assert any(continuations), "some label says something: the comparison is not vacuous"
    again = aigc_in_process(root, "export", CHAMPION_URI, str(out))
    assert again.exit_code == 2 and "not an empty folder" in again.output, again.output
