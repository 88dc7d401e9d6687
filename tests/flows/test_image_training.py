"""Image families on real Ray (2 CPU workers): the same runner as text, tiny budgets."""

from __future__ import annotations

import pytest
import torch

from aigc.config import RayParams
from aigc.models.image import ImageGenerator
from aigc.train.ray_runner import train_on_ray
from tests.flows.test_training import kill_rank_one_after, ray_cluster  # noqa: F401 (fixture)
from tests.unit.test_image_models import job_for

pytestmark = pytest.mark.slow

TWO_WORKERS = RayParams(num_workers=2, max_failures=2)


def test_each_image_family_trains_on_ray_with_two_workers(tmp_path, ray_cluster):  # noqa: F811
    for family in ("dcgan", "vae", "ddpm"):
        job = job_for(family, max_steps=16, eval_every=8, checkpoint_every=8)
        progress: list[dict] = []
        outcome = train_on_ray(
            job,
            TWO_WORKERS,
            None,
            tmp_path / "ray",
            family,
            model_dir=tmp_path / family,
            on_progress=progress.append,
        )
        metrics = outcome.metrics
        assert metrics["step"] == 16 and metrics["images_seen"] == 16 * 32 * 2, family
        assert metrics["images_per_second"] > 0 and progress, family
        generator = ImageGenerator.load(outcome.bundle_dir)
        assert generator.family == family and generator.classes == list(job.classes)
        assert generator.sample(["1", "2"], seed=0).shape == (2, 8, 8, 1)
        if family == "dcgan":  # both optimizers' curves reach the tracker
            assert {"train_loss_discriminator", "train_loss_generator"} <= metrics.keys()
            assert metrics["train_loss_discriminator"] < 2 * torch.log(torch.tensor(2.0))
        else:  # rank 0's last loss below the first one it showed
            assert metrics["train_loss"] < progress[0]["train_loss"], family


def test_killed_gan_worker_resumes_to_the_uninterrupted_weights(
    tmp_path,
    ray_cluster,  # noqa: F811
    monkeypatch,
):
    job = job_for("dcgan", max_steps=12, checkpoint_every=4)
    clean = train_on_ray(job, TWO_WORKERS, None, tmp_path / "ray", "clean", tmp_path / "a")
    marker = tmp_path / "killed"
    kill_rank_one_after(6, marker, monkeypatch)
    faulty = train_on_ray(job, TWO_WORKERS, None, tmp_path / "ray", "killed", tmp_path / "b")
    assert marker.read_text() == "killed rank 1\n", "the worker process must really have died"
    assert (clean.restarts, faulty.restarts, faulty.metrics["step"]) == (0, 1, 12)
    expected = ImageGenerator.load(clean.bundle_dir).model.state_dict()
    resumed = ImageGenerator.load(faulty.bundle_dir).model.state_dict()
    assert all(torch.equal(expected[key], resumed[key]) for key in expected), "G, D and BN stats"
