"""Family hf on real Ray (one CPU worker) and MLflow: a Llama-architecture base (made here,
tests/hf_models.py) trains through the train stage (tests/flows/test_retrain.py evaluates a GPT-2
base through every stage), and a run whose worker is killed after a checkpoint resumes from it
to the weights of the run nobody disturbed.

Slow: two Ray Train runs (about 15 s each).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aigc.config import load_params
from aigc.paths import ProjectPaths
from aigc.ray import train_on_ray
from aigc.stages.train import train
from aigc.text.generator import TextGenerator
from aigc.text.training import prepare_job
from aigc.tracking import TrackingSettings
from tests.conftest import REPO, tiny_overrides
from tests.faults import Faults, KillRank, RecordSteps
from tests.flows.test_training import write_dataset
from tests.hf_models import tiny_llama

pytestmark = pytest.mark.slow


def weights(bundle: Path) -> dict[str, torch.Tensor]:
    return TextGenerator.load(bundle).model.state_dict()


def test_a_llama_base_trains_on_ray_and_a_killed_worker_resumes_to_identical_weights(
    tmp_path: Path, ray_runtime
) -> None:
    base = tiny_llama(tmp_path / "llama")
    dataset = write_dataset(tmp_path / "labeled")
    params = load_params(
        REPO / "params.yaml",
        [
            *(item for item in tiny_overrides(tmp_path) if not item.startswith("train.model.")),
            f"train.model={{family: hf, path: {base}, block_size: 32, dropout: 0.1}}",
            "train.loop.max_steps=30",
            "train.loop.checkpoint_every=15",
            "train.ray.num_workers=1",  # two workers' DDP resume: tests/flows/test_training.py
        ],
    )
    model = train(ProjectPaths.at(tmp_path), params, dataset)
    assert model.lineage["aigc.base_model.architecture"] == "LlamaForCausalLM"
    client = TrackingSettings.of(params.tracking, tmp_path).client()
    curve = [point.value for point in client.get_metric_history(model.run_id, "val_loss")]
    assert len(curve) >= 2 and curve[-1] < curve[0], curve

    job = prepare_job(dataset.split("train"), dataset.split("validation"), params.train)
    steps = RecordSteps(tmp_path / "steps")
    late = KillRank(rank=0, step=20, marker=tmp_path / "killed")
    faulty = train_on_ray(
        job,
        params.train.ray,
        None,
        tmp_path / "ray",
        "killed",
        model_dir=tmp_path / "m",
        on_worker_step=Faults(steps, late),
    )
    assert late.happened(), "the worker process must really have died"
    assert faulty.restarts == 1 and faulty.metrics["step"] == 30
    assert steps.starts() == [1, 16], "resumed from the checkpoint at step 15"
    expected, resumed = weights(model.bundle_dir), weights(faulty.bundle_dir)
    assert expected.keys() == resumed.keys()
    assert all(torch.equal(expected[key], resumed[key]) for key in expected)
