"""An image family on real Ray (2 CPU workers): the same runner as text, a tiny budget.

Slow because it starts Ray Train twice (about 15 s each). The GAN is the family that asks
most of the runner: two optimizers, batch-norm statistics, both losses tracked. That each
family learns is tested single-process in tests/unit/test_image_models.py; here, that the
runner carries a family with several optimizers across workers and through a worker's death.
"""

from __future__ import annotations

import pytest
import torch

from aigc.config import RayParams
from aigc.models.image import ImageGenerator
from aigc.train.ray_runner import train_on_ray
from tests.faults import KillRank
from tests.unit.test_image_models import job_for

pytestmark = pytest.mark.slow

TWO_WORKERS = RayParams(num_workers=2, max_failures=2)


def test_a_gan_trains_on_two_workers_and_a_killed_worker_resumes_to_the_same_weights(
    tmp_path, ray_runtime
):
    job = job_for("dcgan", max_steps=12, eval_every=4, checkpoint_every=4)
    progress: list[dict] = []
    clean = train_on_ray(
        job, TWO_WORKERS, None, tmp_path / "ray", "clean", tmp_path / "a", progress.append
    )
    metrics = clean.metrics
    assert metrics["step"] == 12 and metrics["images_seen"] == 12 * 32 * 2
    assert metrics["images_per_second"] > 0 and progress, "the driver sees rank 0's progress"
    # both optimizers' curves reach the tracker; the discriminator does better than chance
    assert {"train_loss_discriminator", "train_loss_generator"} <= metrics.keys()
    assert metrics["train_loss_discriminator"] < 2 * torch.log(torch.tensor(2.0))
    generator = ImageGenerator.load(clean.bundle_dir)
    assert generator.family == "dcgan" and generator.classes == list(job.classes)
    assert generator.sample(["1", "2"], seed=0).shape == (2, 8, 8, 1)

    kill = KillRank(rank=1, step=6, marker=tmp_path / "killed")
    faulty = train_on_ray(
        job, TWO_WORKERS, None, tmp_path / "ray", "killed", tmp_path / "b", on_worker_step=kill
    )
    assert kill.happened(), "the worker process must really have died"
    assert (clean.restarts, faulty.restarts, faulty.metrics["step"]) == (0, 1, 12)
    expected = generator.model.state_dict()
    resumed = ImageGenerator.load(faulty.bundle_dir).model.state_dict()
    assert all(torch.equal(expected[key], resumed[key]) for key in expected), "G, D and BN stats"
