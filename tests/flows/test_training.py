"""Training on real Ray (2 CPU workers) tracked in a real MLflow sqlite store.

Tiny configs: the point is the machinery (DDP, checkpoints, fault recovery, tracking), not
the model. Slow: two Ray Train runs (about 12 s each to start and end) and three drivers
joining Ray in fresh processes. One module-scoped training run through the stages (the LSTM:
the GPT goes through them in tests/flows/test_retrain.py) serves the tracking, evaluation and
CLI assertions, and is the uninterrupted run that a run whose workers are killed must match.
"""

from __future__ import annotations

import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from aigc.config import Params, load_params
from aigc.paths import ProjectPaths
from aigc.ray import train_on_ray
from aigc.stages.evaluate import evaluate
from aigc.stages.train import train
from aigc.stages.version import Dataset
from aigc.text.generator import TextGenerator
from aigc.text.training import prepare_job
from aigc.tracking import TrackingSettings
from tests.conftest import REPO, TOPIC_WORDS, aigc_in_process, make_documents, tiny_overrides
from tests.faults import Faults, KillRank, RecordSteps

pytestmark = pytest.mark.slow


def write_dataset(folder: Path, count: int = 120) -> Dataset:
    """A labeled dataset in the layout of data/labeled: topic documents, fixed splits."""
    topics = sorted(TOPIC_WORDS)
    rows = [
        {"id": f"{index:016x}", "text": text, "label": topics[index % len(topics)]}
        for index, text in enumerate(make_documents(count).values())
    ]
    frame = pd.DataFrame(rows)
    folder.mkdir(parents=True)
    position = frame.index % 10
    frame[position < 8].to_parquet(folder / "train.parquet")
    frame[position == 8].to_parquet(folder / "validation.parquet")
    frame[position == 9].to_parquet(folder / "test.parquet")
    return Dataset(folder, "f" * 32, "text")


def tiny_params(tmp: Path, *extra: str) -> Params:
    """The suite's tiny configuration with the LSTM family (dropout on: a resumed run must
    draw the same masks), 40 steps with a checkpoint at 20, stores under `tmp`."""
    lstm = ["family=lstm", "block_size=32", "n_embd=32", "hidden_size=64", "n_layer=1"]
    return load_params(
        REPO / "params.yaml",
        [
            *(item for item in tiny_overrides(tmp) if not item.startswith("train.model.")),
            *(f"train.model.{item}" for item in lstm),
            "train.model.dropout=0.1",
            "train.loop.max_steps=40",
            "train.loop.checkpoint_every=20",
            "evaluate.continuation_documents=4",
            *extra,
        ],
    )


# A second driver: joins the Ray at argv[1] with whatever token its environment names.
DRIVER = """
import sys, ray
try:
    ray.init(address=sys.argv[1], log_to_driver=False)
except Exception as error:
    print("refused:", type(error).__name__, error)
    sys.exit(1)
print("connected")
"""


def test_local_ray_listens_on_loopback_and_admits_only_the_projects_token(ray_runtime, tmp_path):
    import psutil
    import ray

    from aigc import runtime

    token = ray_runtime / "ray" / "auth-token"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600 and len(token.read_text()) == 64
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:")
    listening = {
        (entry["pid"], connection.laddr.ip)
        for entry in runtime.start(ray_runtime).processes
        if psutil.pid_exists(entry["pid"])
        for connection in psutil.Process(entry["pid"]).net_connections("inet")
        if connection.status == psutil.CONN_LISTEN
    }
    assert len(listening) >= 3, "the GCS, the raylet and its agents listen"
    assert {ip for _, ip in listening} <= {"127.0.0.1", "::ffff:127.0.0.1"}, listening

    home = tmp_path / "home"  # no ~/.ray/auth_token to fall back on
    home.mkdir()
    base = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")} | {
        "HOME": str(home),
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PYTHONPATH": "",
        # A refused driver asks the GCS once a second, 20 times by default, before it gives
        # up: the first refusal (InvalidAuthToken, in its output) is the answer.
        "RAY_NUM_REDIS_GET_RETRIES": "2",
    }
    tokens = {
        "no token": {},
        "a wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)},
        "the project's token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token)},
    }
    drivers = {
        name: subprocess.Popen(
            [sys.executable, "-c", DRIVER, address],
            env=base | extra,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, extra in tokens.items()
    }
    outputs = {name: driver.communicate(timeout=240)[0] for name, driver in drivers.items()}
    assert drivers["the project's token"].returncode == 0, outputs["the project's token"]
    for name in ("no token", "a wrong token"):
        assert drivers[name].returncode == 1, outputs[name]
        assert "InvalidAuthToken" in outputs[name], outputs[name]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, ray_runtime):
    tmp = tmp_path_factory.mktemp("training")
    dataset = write_dataset(tmp / "labeled")
    params = tiny_params(tmp)
    progress: list[dict] = []
    model = train(ProjectPaths.at(tmp), params, dataset, on_progress=progress.append)
    evaluation = evaluate(
        ProjectPaths.at(tmp), params, model.model_uri, dataset, model.run_id, model.bundle_dir
    )
    settings = TrackingSettings.of(params.tracking, tmp)
    return model, settings, params, tmp, evaluation, progress


def test_loss_falls_with_two_workers(trained):
    model, settings, _, _, evaluation, progress = trained
    assert progress and progress[-1]["step"] == 40, "the driver sees rank 0's progress"
    client = settings.client()
    train_loss = [
        m.value
        for m in sorted(
            client.get_metric_history(model.run_id, "train_loss"), key=lambda m: m.step
        )
    ]
    val_loss = [
        m.value
        for m in sorted(client.get_metric_history(model.run_id, "val_loss"), key=lambda m: m.step)
    ]
    assert len(train_loss) == 40 and len(val_loss) == 4
    assert sum(train_loss[-5:]) / 5 < sum(train_loss[:5]) / 5 - 0.5
    assert val_loss[-1] < val_loss[0]
    metrics = evaluation.metrics
    assert metrics["test_bits_per_character"] < metrics["unigram_bits_per_character"]


def test_run_records_everything_a_reader_needs(trained):
    """The training run holds training and evaluation: params, tags, dataset, all figures."""
    model, settings, _, _, evaluation, _ = trained
    assert evaluation.run_id == model.run_id
    client = settings.client()
    run = client.get_run(model.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["aigc.data_version"] == model.data_version
    assert run.data.tags["aigc.git_commit"] and run.data.tags["aigc.params_hash"]
    assert run.data.params["train.model.family"] == "lstm"
    assert run.data.params["train.model.n_layer"] == "1", "the effective (overridden) value"
    (dataset_input,) = run.inputs.dataset_inputs
    assert dataset_input.dataset.digest == f"{model.data_version}.dir"
    for key in (
        "test_bits_per_character",
        "bleu",
        "chrf",
        "rougeL",
        "distinct_2",
        "label_control_accuracy",
        "tokens_per_second",
        "lr",
    ):
        assert key in run.data.metrics, key
    artifacts = {
        item.path
        for folder in ("plots", "samples", "evaluation")
        for item in client.list_artifacts(model.run_id, folder)
    }
    assert {
        "plots/loss_curve.png",
        "samples/samples_per_label.txt",
        "evaluation/evaluation.json",
        "evaluation/per_document.csv",
    } <= artifacts


def test_the_stage_keeps_the_model_and_leaves_no_checkpoints(trained):
    model, _, params, tmp, _, _ = trained
    assert not (Path(params.train.ray.storage_path) / model.run_id).exists()
    assert model.bundle_dir == tmp / ".aigc" / "run" / str(os.getpid()) / "models" / model.run_id
    assert TextGenerator.load(model.bundle_dir).family == "lstm"


def test_generate_cli_loads_the_logged_model(trained):
    model, _, params, tmp, _, _ = trained
    command = [
        "generate",
        "--model-uri",
        model.model_uri,
        "--label",
        "networking",
        "--prompt",
        "The socket",
        "-n",
        "2",
        "--seed",
        "3",
        "--max-new-tokens",
        "12",
        "--set",
        f"tracking.tracking_uri={params.tracking.tracking_uri}",
        "--set",
        f"tracking.artifact_root={params.tracking.artifact_root}",
    ]
    first = aigc_in_process(tmp, *command)
    assert first.exit_code == 0, first.output
    assert first.output.count("sample ") == 2 and "The socket" in first.output
    again = aigc_in_process(tmp, *command)
    assert again.output == first.output, "the same seed must give the same samples"


def weights(bundle: Path) -> dict[str, torch.Tensor]:
    return TextGenerator.load(bundle).model.state_dict()


def test_workers_killed_before_and_after_a_checkpoint_resume_to_identical_weights(
    tmp_path, trained
):
    """The same job as the stage's run above, on the same Ray settings (2 workers, restarts
    allowed): rank 1 dies at step 10, before the first checkpoint (the group restarts from
    scratch: a restart all the same), and rank 0 at step 25, after the one at step 20 (the
    group resumes from it). Two restarts, and the same weights as the run nobody disturbed."""
    model, _, params, tmp, _, _ = trained
    dataset = Dataset(tmp / "labeled", model.data_version, "text")
    job = prepare_job(dataset.split("train"), dataset.split("validation"), params.train)
    steps = RecordSteps(tmp_path / "steps")
    # (no checkpoint before step 10 for Ray to register first: no wait before the kill)
    early = KillRank(rank=1, step=10, marker=tmp_path / "killed-early", delay_seconds=0)
    late = KillRank(rank=0, step=25, marker=tmp_path / "killed-late")
    faulty = train_on_ray(
        job,
        params.train.ray,
        None,
        tmp_path / "ray",
        "killed",
        model_dir=tmp_path / "m",
        on_worker_step=Faults(steps, early, late),
    )
    assert early.happened() and late.happened(), "the worker processes must really have died"
    assert faulty.restarts == 2 and faulty.metrics["step"] == 40
    # rank 0's three processes began at step 1, at step 1 again (no checkpoint before step
    # 10), and after the checkpoint at step 20: resumed, not retrained from scratch
    assert steps.starts() == [1, 1, 21]
    expected, resumed = weights(model.bundle_dir), weights(faulty.bundle_dir)
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)
    assert not (tmp_path / "ray" / "killed").exists(), "no checkpoint folder may stay behind"


def test_evaluate_reproduces_the_training_runs_figures(trained):
    """The logged model, evaluated again from MLflow into a run of its own, gives the same."""
    model, settings, params, tmp, evaluation, _ = trained
    again = evaluate(
        ProjectPaths.at(tmp),
        params,
        model.model_uri,
        Dataset(tmp / "labeled", model.data_version, "text"),
    )
    assert again.run_id != model.run_id
    for key in ("test_bits_per_character", "bleu", "label_control_accuracy"):
        assert again.metrics[key] == pytest.approx(evaluation.metrics[key], rel=1e-6), key
    run = settings.client().get_run(again.run_id)
    assert run.data.tags["aigc.evaluated_model_uri"] == model.model_uri
    assert run.data.metrics["test_bits_per_character"] == pytest.approx(
        evaluation.metrics["test_bits_per_character"], rel=1e-6
    )
