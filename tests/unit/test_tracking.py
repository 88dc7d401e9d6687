"""aigc.tracking and aigc.serving.pyfunc against a real MLflow sqlite store in a temporary folder.

A run's params, tags, metric history, artifacts and dataset input are read back through
MlflowClient; a tiny untrained generator is logged as a pyfunc model and loaded back in this
process (load_generator, by every kind of URI) and in a fresh Python process
(mlflow.pyfunc.load_model), which must give the texts TextGenerator.generate gives.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus
from pydantic import ValidationError

from aigc.config import TrackingParams
from aigc.models import build_model
from aigc.serving.pyfunc import generate_frame
from aigc.text.generator import TextGenerator
from aigc.text.tokenizer import TextTokenizer
from aigc.tracking import (
    DatasetInfo,
    TrackingSettings,
    TrainingRun,
    git_commit,
    hash_params,
    load_generator,
    log_generator_model,
    register_model,
    run_tags,
    source_tags,
)
from tests.conftest import git

LABELS = ["concurrency", "networking"]
DVC_HASH = "3f2c0b6f1d0e4c51a2b7d8e9f0a1b2c3.dir"  # the shape of a DVC directory hash
PARAMS = {"model": {"family": "gpt", "n_layer": 1}, "train": {"lr": 0.01, "steps": [1, 2]}}


@pytest.fixture(scope="module", autouse=True)
def quiet_downloads():
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        yield


@pytest.fixture(scope="module")
def generator() -> TextGenerator:
    """Untrained: sampling is still deterministic for a seed, which is all these tests need."""
    texts = [
        f"The {word} waits for the {other} in case {index}."
        for index, (word, other) in enumerate([("thread", "lock"), ("socket", "server")] * 20)
    ]
    tokenizer = TextTokenizer.train(texts, labels=LABELS, vocab_size=300, min_frequency=1)
    config = {"vocab_size": 300, "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 16}
    model = build_model({"family": "gpt", **config}, seed=0).eval()
    return TextGenerator(model=model, tokenizer=tokenizer, config=model.config)


def store(root: Path) -> TrackingSettings:
    return TrackingSettings.of(TrackingParams(), root)


def dataset() -> DatasetInfo:
    return DatasetInfo(
        "labeled",
        digest=DVC_HASH,
        source="data/labeled",
        schema={"text": "string", "label": "string"},
        profile={"rows": 40},
    )


@pytest.fixture(scope="module")
def logged(tmp_path_factory, generator: TextGenerator) -> dict:
    """One store with one finished run that logged the generator as a model."""
    root = tmp_path_factory.mktemp("logged")
    settings = store(root)
    generator.save(root / "bundle")
    uri_before = mlflow.get_tracking_uri()
    with TrainingRun.start(settings, "tiny", PARAMS, dataset=dataset()) as run:
        run.log_metrics({"train.loss": 5.5}, step=3)
        started = time.perf_counter()
        model_uri = log_generator_model(run, root / "bundle", step=3)
        seconds = time.perf_counter() - started
    assert mlflow.get_tracking_uri() == uri_before  # the process-wide URI is put back
    return {
        "root": root,
        "settings": settings,
        "run_id": run.run_id,
        "uri": model_uri,
        "log_seconds": seconds,
    }


# --- settings ---------------------------------------------------------------------------


def test_resolve_makes_paths_absolute_and_creates_the_store_folder(tmp_path: Path) -> None:
    settings = TrackingSettings("sqlite:///mlflow/mlflow.db", "mlflow/artifacts", "aigc-text")
    assert not settings.is_resolved
    with pytest.raises(ValueError, match="resolve"):
        settings.client()
    resolved = settings.resolve(tmp_path)
    assert resolved.tracking_uri == f"sqlite:///{tmp_path}/mlflow/mlflow.db"
    assert resolved.artifact_root == (tmp_path / "mlflow" / "artifacts").as_uri()
    assert resolved.experiment_artifact_location.endswith("/mlflow/artifacts/aigc-text")
    assert (tmp_path / "mlflow").is_dir() and resolved.is_resolved
    assert resolved.resolve(tmp_path / "elsewhere") == resolved  # absolute stays absolute


def test_remote_uri_is_unchanged_and_leaves_artifacts_to_the_server(tmp_path: Path) -> None:
    relative_artifacts = TrackingSettings("http://127.0.0.1:5000", "mlflow/artifacts", "aigc-text")
    remote = relative_artifacts.resolve(tmp_path)
    assert remote.tracking_uri == "http://127.0.0.1:5000"
    assert remote.artifact_root is None and remote.is_resolved
    s3_artifacts = TrackingSettings("http://127.0.0.1:5000", "s3://bucket/aigc", "aigc-text")
    explicit = s3_artifacts.resolve(tmp_path)
    assert explicit.artifact_root == "s3://bucket/aigc"


def test_settings_of_params_names_the_bad_key(tmp_path: Path) -> None:
    assert TrackingSettings.of(TrackingParams(experiment="x"), tmp_path).experiment == "x"
    with pytest.raises(ValidationError, match="tracking_url"):
        TrackingParams(tracking_url="sqlite:///x.db")


def test_dataset_digest_longer_than_mlflow_allows_is_refused() -> None:
    with pytest.raises(ValueError, match="digest"):
        DatasetInfo("labeled", digest="x" * 37, source="data/labeled")


def test_importing_tracking_and_serving_does_no_work() -> None:
    code = (
        "import sys, aigc.tracking, aigc.serving; "
        "print(sorted(m for m in ('mlflow', 'torch') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


# --- runs -------------------------------------------------------------------------------


def test_a_run_records_params_tags_metrics_artifacts_and_dataset(tmp_path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    settings = store(tmp_path)
    tags = run_tags(DVC_HASH, "abc123+dirty", hash_params(PARAMS), {"stage": "train"})
    (tmp_path / "report.txt").write_text("clean report", encoding="utf-8")
    figure = Figure()
    figure.add_subplot().plot([3.0, 2.0, 1.5])
    figure.savefig(tmp_path / "histogram.png")

    with TrainingRun.start(settings, "first", PARAMS, tags, dataset()) as run:
        for step, loss in enumerate([3.0, 2.0, 1.5]):
            run.log_metrics({"train.loss": loss, "train.tokens": 100 * (step + 1)}, step=step)
        run.log_artifact(tmp_path / "report.txt", "reports")
        run.log_text("some samples", "samples/step-2.txt")
        run.log_dict({"vocab_size": 300}, "config.json")
        run.log_figure(figure, "plots/loss.png")
        run.log_image(tmp_path / "histogram.png")

    client = MlflowClient(settings.tracking_uri)
    record = client.get_run(run.run_id)
    assert record.info.status == "FINISHED" and record.info.run_name == "first"
    assert record.data.params == {
        "model.family": "gpt",
        "model.n_layer": "1",
        "train.lr": "0.01",
        "train.steps": "[1, 2]",
    }
    assert record.data.tags["aigc.data_version"] == DVC_HASH
    assert record.data.tags["aigc.git_commit"] == "abc123+dirty"
    assert record.data.tags["mlflow.source.git.commit"] == "abc123"
    assert record.data.tags["aigc.params_hash"] == hash_params(PARAMS)
    assert record.data.tags["stage"] == "train"
    history = client.get_metric_history(run.run_id, "train.loss")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 2.0), (2, 1.5)]
    assert [m.step for m in client.get_metric_history(run.run_id, "train.tokens")] == [0, 1, 2]

    files = {
        a.path
        for folder in ("", "reports", "samples", "plots", "images")
        for a in client.list_artifacts(run.run_id, folder or None)
    }
    assert {
        "reports/report.txt",
        "samples/step-2.txt",
        "config.json",
        "plots/loss.png",
        "images/histogram.png",
    } <= files
    experiment = client.get_experiment(record.info.experiment_id)
    assert experiment.artifact_location == settings.experiment_artifact_location
    assert record.info.artifact_uri.startswith(settings.experiment_artifact_location)
    text = Path(
        mlflow.artifacts.download_artifacts(
            run_id=run.run_id,
            artifact_path="samples/step-2.txt",
            dst_path=str(tmp_path / "dl"),
            tracking_uri=settings.tracking_uri,
        )
    ).read_text()
    assert text == "some samples"

    (used,) = record.inputs.dataset_inputs
    assert (used.dataset.name, used.dataset.digest) == ("labeled", DVC_HASH)
    assert json.loads(used.dataset.source) == {"uri": "data/labeled"}
    assert json.loads(used.dataset.profile) == {"rows": 40}
    assert {tag.key: tag.value for tag in used.tags} == {"mlflow.data.context": "training"}


def test_a_run_names_the_command_that_opened_it_as_its_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["/venv/bin/aigc", "run", "--set", "train.loop.lr=0.1"])
    with TrainingRun.start(store(tmp_path), "sourced", PARAMS) as run:
        pass
    tags = MlflowClient(store(tmp_path).tracking_uri).get_run(run.run_id).data.tags
    assert tags["mlflow.source.name"] == "aigc run"  # MLflow's run page: "Source aigc run"
    assert tags["mlflow.source.type"] == "JOB"

    def name(*argv: str) -> str:
        return source_tags(list(argv))["mlflow.source.name"]

    assert name("/venv/bin/aigc", "data", "refresh", "--params", "p.yaml") == "aigc data refresh"
    assert name("/venv/bin/aigc", "reproduce", "aigc-text/1") == "aigc reproduce aigc-text/1"
    assert name("/venv/lib/python3.11/site-packages/prefect/engine.py") == "prefect.engine"
    assert name("/venv/lib/site-packages/pytest/__main__.py", "tests", "-q") == "pytest tests"
    assert name("bench/pipeline.py") == "pipeline.py"
    assert name("") == "python"


def test_resume_continues_a_failed_run(tmp_path: Path) -> None:
    settings = store(tmp_path)
    with pytest.raises(RuntimeError), TrainingRun.start(settings, "crashy", PARAMS) as run:
        run.log_metrics({"train.loss": 3.0}, step=0)
        raise RuntimeError("worker died")
    client = MlflowClient(settings.tracking_uri)
    assert client.get_run(run.run_id).info.status == "FAILED"

    resumed = TrainingRun.resume(settings, run.run_id)  # e.g. in the restarted worker
    assert client.get_run(run.run_id).info.status == "RUNNING"
    resumed.log_params(PARAMS)  # the same values again: allowed
    resumed.log_metrics({"train.loss": 2.0}, step=1)
    resumed.end()

    assert resumed.run_id == run.run_id
    assert len(client.search_runs([run.experiment_id])) == 1
    history = client.get_metric_history(run.run_id, "train.loss")
    assert [(m.step, m.value) for m in history] == [(0, 3.0), (1, 2.0)]
    assert client.get_run(run.run_id).info.status == "FINISHED"
    with pytest.raises(ValueError, match="no run 'f00'"):
        TrainingRun.resume(settings, "f00")
    wrong_type = DatasetInfo("labeled", DVC_HASH, "data/labeled", schema={"text": "str"})
    with pytest.raises(ValueError, match="schema column 'text'"):
        resumed.log_dataset(wrong_type)


def test_two_runs_in_one_process_stay_apart(tmp_path: Path) -> None:
    settings = store(tmp_path)
    first = TrainingRun.start(settings, "a", {"seed": 1})
    second = TrainingRun.start(settings, "b", {"seed": 2})
    first.log_metrics({"loss": 1.0}, step=0)
    second.log_metrics({"loss": 2.0}, step=0)
    first.end()
    second.end("FAILED")
    client = MlflowClient(settings.tracking_uri)
    assert client.get_run(first.run_id).data.metrics == {"loss": 1.0}
    assert client.get_run(second.run_id).data.metrics == {"loss": 2.0}
    assert client.get_run(second.run_id).info.status == "FAILED"
    assert mlflow.active_run() is None  # no global run was opened


def test_git_commit_marks_a_dirty_tree_and_unknown_outside_git(tmp_path: Path) -> None:
    assert git_commit(tmp_path) == "unknown"
    git(tmp_path, "init", "-q")
    assert git_commit(tmp_path) == "unknown"  # no commit yet
    git(tmp_path, "config", "user.email", "test@example.com")
    git(tmp_path, "config", "user.name", "test")
    (tmp_path / "a.txt").write_text("a")
    git(tmp_path, "add", "a.txt")
    git(tmp_path, "commit", "-qm", "a")
    head = git(tmp_path, "rev-parse", "HEAD").strip()
    assert git_commit(tmp_path) == head
    (tmp_path / "untracked.txt").write_text("not part of the code")
    assert git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("changed")
    assert git_commit(tmp_path) == f"{head}+dirty"
    assert hash_params({"b": 1, "a": {"c": 2}}) == hash_params({"a": {"c": 2}, "b": 1})
    assert hash_params({"a": 1}) != hash_params({"a": 2})


# --- models -----------------------------------------------------------------------------


def test_logged_model_belongs_to_the_run(logged: dict) -> None:
    client = MlflowClient(logged["settings"].tracking_uri)
    assert logged["uri"].startswith("models:/m-")
    model = client.get_logged_model(logged["uri"].removeprefix("models:/"))
    run = client.get_run(logged["run_id"])
    assert model.source_run_id == logged["run_id"]
    assert model.experiment_id == run.info.experiment_id
    assert model.artifact_location.startswith(logged["settings"].experiment_artifact_location)
    assert model.status == LoggedModelStatus.READY
    assert model.params["model.n_layer"] == "1"
    assert [(m.key, m.value) for m in model.metrics] == [("train.loss", 5.5)]
    assert logged["log_seconds"] < 30


def test_load_generator_by_every_kind_of_uri(logged: dict, generator: TextGenerator) -> None:
    settings = logged["settings"]
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    version = register_model(settings, logged["uri"], "aigc-text", alias="champion")
    assert int(client.get_model_version_by_alias("aigc-text", "champion").version) == version
    assert client.get_model_version("aigc-text", str(version)).run_id == logged["run_id"]
    location = client.get_logged_model(logged["uri"].removeprefix("models:/")).artifact_location

    prompts, labels = ["The thread", "The socket", "The"], ["concurrency", None, "networking"]
    expected = generator.generate(prompts, labels, max_new_tokens=10, seed=5)
    uris = [
        logged["uri"],
        f"runs:/{logged['run_id']}/model",
        "models:/aigc-text@champion",
        f"models:/aigc-text/{version}",
        location,  # file:// URI of the model folder
        location.removeprefix("file://"),  # and its plain path
    ]
    for uri in uris:
        loaded = load_generator(uri, settings)
        assert loaded.labels == tuple(LABELS), uri
        assert loaded.generate(prompts, labels, max_new_tokens=10, seed=5) == expected, uri
    with pytest.raises(ValueError, match="TrackingSettings"):
        load_generator(logged["uri"])


def test_pyfunc_rejects_unknown_labels_and_bad_columns(
    logged: dict, generator: TextGenerator
) -> None:
    client = MlflowClient(logged["settings"].tracking_uri)
    location = client.get_logged_model(logged["uri"].removeprefix("models:/")).artifact_location
    model = mlflow.pyfunc.load_model(location)
    with pytest.raises(
        ValueError,
        match=r"column 'label', row 1: unknown label 'sports'.*"
        r"'concurrency', 'networking'",
    ):
        model.predict(pd.DataFrame({"prompt": ["a", "b"], "label": ["networking", "sports"]}))
    with pytest.raises(Exception, match="prompt"):  # MLflow's signature check comes first
        model.predict(pd.DataFrame({"label": ["networking"]}))
    with pytest.raises(ValueError, match="no 'prompt' column"):
        generate_frame(generator, pd.DataFrame({"text": ["a"]}))
    with pytest.raises(ValueError, match="column 'max_new_tokens', row 0"):
        generate_frame(generator, pd.DataFrame({"prompt": ["a"], "max_new_tokens": [-1]}))
    with pytest.raises(ValueError, match="column 'temperature', row 0"):
        generate_frame(generator, pd.DataFrame({"prompt": ["a"], "temperature": ["hot"]}))


def test_pyfunc_rows_use_their_own_settings(generator: TextGenerator) -> None:
    frame = pd.DataFrame(
        {
            "prompt": ["The", "The", "The"],
            "label": ["networking", float("nan"), ""],
            "max_new_tokens": [4, 6, None],
            "seed": [1, 2, None],
        }
    )
    texts = generate_frame(generator, frame)
    assert texts[0] == generator.generate(["The"], ["networking"], max_new_tokens=4, seed=1)[0]
    assert texts[1] == generator.generate(["The"], [None], max_new_tokens=6, seed=2)[0]
    assert texts[2] == generator.generate(["The"], [None], max_new_tokens=64, seed=0)[0]


FRESH_PROCESS = """
import json, sys
import mlflow, pandas as pd
frame = pd.DataFrame(json.loads(sys.argv[2]))
model = mlflow.pyfunc.load_model(sys.argv[1])
print(json.dumps([list(model.predict(frame)), list(model.predict(frame))]))
"""


@pytest.mark.slow  # a fresh Python process importing mlflow and torch: ~5 s
def test_pyfunc_in_a_fresh_process_matches_generate(
    logged: dict, generator: TextGenerator, tmp_path: Path
) -> None:
    frame = {
        "prompt": ["The thread", "The socket", "The", "The"],
        "label": ["concurrency", "networking", None, ""],
        "max_new_tokens": [12] * 4,
        "temperature": [0.8] * 4,
        "seed": [3] * 4,
    }
    environment = {**os.environ, "MLFLOW_TRACKING_URI": logged["settings"].tracking_uri}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, logged["uri"], json.dumps(frame)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    seconds = time.perf_counter() - started
    assert result.returncode == 0, result.stderr[-3000:]
    first, second = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(first) == 4 and all(isinstance(text, str) for text in first)
    assert first == second
    expected = generator.generate(
        frame["prompt"],
        ["concurrency", "networking", None, None],
        max_new_tokens=12,
        temperature=0.8,
        seed=3,
    )
    assert first == expected
    assert seconds < 120
