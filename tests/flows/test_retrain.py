"""The three jobs' core on real Prefect, Ray, MLflow (sqlite) and DVC, with tiny configs.

One project lives through: a first run (→ champion), an unchanged rerun (→ "no change"),
new inbox data (→ new data version → challenger → a decision with reasons), a rollback, a
crash between register and decide (→ the next run finishes the decision), and a second run
while one holds the lock (→ a clear message, nothing written).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from aigc.config import load_params
from aigc.paths import ProjectPaths
from aigc.pipeline import PipelineBusy, PipelineLock
from aigc.registry.registry import CHALLENGER, CHAMPION, by_alias, history, rollback, versions
from aigc.reproduce import ReproductionError, reproduce
from aigc.tracking import TrackingSettings
from tests.conftest import make_documents, write_documents

pytestmark = pytest.mark.slow

AIGC = str(Path(sys.executable).parent / "aigc")

TINY = {
    "train": {
        "family": "gpt",
        "model": {"block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32, "dropout": 0.0},
        "tokenizer": {"vocab_size": 320, "min_frequency": 1},
        "batch_size": 8,
        "loop": {
            "max_steps": 30,
            "max_minutes": None,
            "warmup_steps": 5,
            "eval_every": 10,
            "checkpoint_every": 0,
            "lr": 0.005,
        },
        "ray": {"num_workers": 2},
    },
    "evaluate": {
        "continuation_documents": 3,
        "samples_per_label": 2,
        "sample_tokens": 16,
        "max_new_tokens": 16,
    },
    "registry": {"policy": {"bootstrap_samples": 200}},
}


@pytest.fixture(scope="module")
def prefect():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def pipeline_project(project: Path, tmp_path: Path) -> tuple[Path, TrackingSettings]:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(TINY)
    params["train"]["ray"]["storage_path"] = str(tmp_path / "ray")
    params["tracking"] = {
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "artifact_root": str(tmp_path / "artifacts"),
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    settings = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_root=str(tmp_path / "artifacts")
    ).resolve(project)
    return project, settings


def aliases(settings: TrackingSettings) -> dict[str, str | None]:
    return {
        alias: getattr(by_alias(settings, "aigc-text", alias), "version", None)
        for alias in (CHAMPION, CHALLENGER)
    }


def test_champion_then_no_change_then_decision_then_rollback(pipeline_project, prefect):
    from flows.retrain import retrain

    root, settings = pipeline_project
    first = retrain(root=str(root))
    assert first.status == "promoted", first.reasons
    assert any("unigram" in reason for reason in first.reasons)
    assert aliases(settings) == {CHAMPION: "1", CHALLENGER: "1"}

    again = retrain(root=str(root))
    assert again.status == "no change" and again.challenger_version == "1"
    assert len(versions(settings, "aigc-text")) == 1, "no change must not train or register"
    assert again.seconds < first.seconds / 2

    write_documents(root / "data" / "inbox", make_documents(30, seed=11, prefix="new"))
    third = retrain(root=str(root))
    assert third.data_version != first.data_version
    assert third.challenger_version == "2" and third.status in ("promoted", "rejected")
    assert third.champion_metrics is not None, "the champion is re-evaluated on the same split"
    assert any("bootstrap" in reason for reason in third.reasons)
    expected_champion = "2" if third.status == "promoted" else "1"
    assert aliases(settings) == {CHAMPION: expected_champion, CHALLENGER: "2"}
    decided = {entry["version"]: entry["decision"] for entry in history(settings, "aigc-text")}
    assert decided == {"1": "promoted", "2": third.status}

    if third.status == "promoted":
        assert rollback(settings, "aigc-text", "test").version == "1"
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


def test_crash_between_register_and_decide_is_finished_by_the_next_run(pipeline_project, prefect):
    from prefect.logging import disable_run_logger

    from aigc.config import load_params
    from aigc.pipeline import training_key
    from flows.data_refresh import data_refresh
    from flows.retrain import retrain
    from tasks.register import register
    from tasks.train import train

    root, settings = pipeline_project
    labeled = data_refresh(root=str(root))
    params = load_params(root / "params.yaml")
    key = training_key(labeled.version, params)
    with disable_run_logger():
        trained = train.fn(root, params, key)
        register.fn(root, params, trained, key)  # ... and the process dies here
    assert aliases(settings) == {CHAMPION: None, CHALLENGER: "1"}

    summary = retrain(root=str(root))
    assert summary.challenger_version == "1", "the registered version is decided, not retrained"
    assert len(versions(settings, "aigc-text")) == 1
    assert summary.status == "promoted" and aliases(settings) == {CHAMPION: "1", CHALLENGER: "1"}


def test_a_second_run_waits_for_the_lock_then_ends_clearly(pipeline_project, prefect):
    from flows.retrain import retrain

    root, settings = pipeline_project
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["run"] = {"lock_timeout_minutes": 0.02}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with PipelineLock(root), pytest.raises(PipelineBusy, match="another aigc run holds"):
        retrain(root=str(root))
    assert not (root / "data" / "raw").exists(), "the waiting run must not touch data/"
    assert versions(settings, "aigc-text") == []
