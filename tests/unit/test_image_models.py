"""Image families (dcgan, vae, ddpm) through the shared training loop, on the 8x8 digits."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from aigc.config import ImageTrainParams
from aigc.image.generator import ImageGenerator
from aigc.image.training import prepare_image_job
from aigc.models import build_model, get_family
from aigc.models.configs import DCGANConfig, parse_image_model_config
from aigc.models.image import to_pixels
from aigc.models.vae import bits_per_dim
from aigc.train.job import train_single_process, with_loop
from aigc.train.loop import LoopHooks

TINY = {
    "dcgan": {"generator_width": 16, "discriminator_width": 16, "latent_size": 16},
    "vae": {"width": 16, "latent_size": 8, "kl_warmup_steps": 20},
    "ddpm": {"width": 16, "timesteps": 50, "sample_steps": 5},
}


def digits(count: int = 600) -> tuple[SimpleNamespace, SimpleNamespace]:
    """Train and validation ImageSplits of scikit-learn's digits: uint8 (N, 8, 8, 1)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    pixels = (data.images[:count] * (255 / 16)).round().astype(np.uint8)[..., None]
    labels = data.target[:count].astype(np.int64)
    classes = [str(digit) for digit in range(10)]
    cut = count * 5 // 6
    return (
        SimpleNamespace(pixels=pixels[:cut], labels=labels[:cut], classes=classes),
        SimpleNamespace(pixels=pixels[cut:], labels=labels[cut:], classes=classes),
    )


def job_for(family: str, **loop):
    params = ImageTrainParams.model_validate(
        {"model": {"family": family, **TINY[family]}, "batch_size": 32}
    )
    settings = {"max_steps": 60, "max_minutes": None, "eval_every": 0, "checkpoint_every": 0}
    return with_loop(prepare_image_job(*digits(), params), **settings | loop)


def class_mean_distance(images: torch.Tensor, labels: torch.Tensor, split) -> float:
    """Mean L2 distance between each class's mean sample and its mean real image, in [0, 1]."""
    real = torch.as_tensor(split.pixels).float() / 255
    fake = images.float() / 255
    return float(
        torch.stack(
            [
                (fake[labels == c].mean(0) - real[torch.as_tensor(split.labels) == c].mean(0))
                .pow(2)
                .mean()
                .sqrt()
                for c in labels.unique()
            ]
        ).mean()
    )


@pytest.mark.parametrize("family", ["dcgan", "vae", "ddpm"])
def test_each_family_learns_the_digits(family: str) -> None:
    job = job_for(family, eval_every=30)
    sampler = get_family(family).sampler
    labels = torch.arange(10).repeat_interleave(4)
    before = class_mean_distance(
        sampler(build_model(job.model, seed=job.seed), labels, 0), labels, digits()[0]
    )
    steps: list[dict] = []
    model, result = train_single_process(job, LoopHooks(on_step=steps.append))
    after = class_mean_distance(sampler(model, labels, 0), labels, digits()[0])
    assert result.steps == 60 and steps[-1]["tokens_seen"] == 60 * 32, "images are the unit"
    assert after < 0.75 * before, "samples of a class move toward that class's real images"
    first, last = result.evaluations
    if family == "dcgan":
        # Two optimizers, each loss reported; D learns to tell real from fake (2 ln 2 = chance).
        assert {"loss_discriminator", "loss_generator"} <= steps[0].keys()
        assert np.mean([s["loss_discriminator"] for s in steps[-20:]]) < 2 * np.log(2)
    else:  # the ELBO (bits/dim) and the denoising loss fall on held-out images
        assert last["val_loss"] < 0.8 * first["val_loss"] or last["val_loss"] < first["val_loss"]
        assert np.mean([s["loss"] for s in steps[-5:]]) < np.mean([s["loss"] for s in steps[:5]])


@pytest.mark.parametrize("family", ["dcgan", "vae", "ddpm"])
def test_samplers_depend_on_their_seed_only(family: str) -> None:
    config = parse_image_model_config({"family": family, **TINY[family]}).with_data(8, 1, 10)
    model = build_model(config, seed=0)
    labels = torch.tensor([0, 3, 3, 9])
    torch.manual_seed(1)
    first = get_family(family).sampler(model, labels, seed=5)
    state = torch.get_rng_state()
    again = get_family(family).sampler(model.train(), labels, seed=5)
    assert torch.equal(torch.get_rng_state(), state), "sampling leaves the global RNG alone"
    assert first.dtype == torch.uint8 and first.shape == (4, 8, 8, 1)
    assert torch.equal(first, again) and model.training, "same seed, same images; mode restored"
    assert not torch.equal(first, get_family(family).sampler(model, labels, seed=6))


@pytest.mark.parametrize("family", ["dcgan", "vae", "ddpm"])
def test_families_scale_to_32x32_rgb(family: str) -> None:
    config = parse_image_model_config({"family": family, **TINY[family]}).with_data(32, 3, 10)
    model = build_model(config, seed=0)
    pixels, labels = torch.rand(2, 3, 32, 32) * 2 - 1, torch.tensor([1, 2])
    phase = "generator" if family == "dcgan" else "model"
    assert model(pixels, labels, phase, 0).dim() == 0
    assert get_family(family).sampler(model, labels, seed=0).shape == (2, 32, 32, 3)


def test_gan_runs_are_deterministic_and_resume_exactly_with_two_optimizers(tmp_path) -> None:
    job = job_for("dcgan", max_steps=6, checkpoint_every=3)
    saved: list[dict] = []
    hooks = LoopHooks(save_checkpoint=lambda state: saved.append(copy.deepcopy(state)))
    uninterrupted, _ = train_single_process(job, hooks)
    again, _ = train_single_process(job)
    assert [state["step"] for state in saved] == [3, 6]
    assert set(saved[0]["optimizers"]) == {"discriminator", "generator"}
    # ... and through the files of a Ray checkpoint, loaded with weights_only as a restarted
    # worker loads them (the Ray run itself is family-blind: tests/flows/test_training.py)
    from ray.train import Checkpoint

    from aigc.ray.checkpoints import resume_state, write_checkpoint

    write_checkpoint(tmp_path, saved[0], rank=0, summary={"step": 3.0})
    resumed, result = train_single_process(job, resume_state=saved[0])
    assert result.steps == 6
    from_files, _ = train_single_process(
        job, resume_state=resume_state(Checkpoint.from_directory(tmp_path), rank=0)
    )
    reference = uninterrupted.state_dict()  # weights and BatchNorm statistics
    for other in (again, resumed, from_files):
        assert all(torch.equal(reference[k], other.state_dict()[k]) for k in reference)


def test_vae_bits_per_dim_and_the_bundle_round_trip(tmp_path) -> None:
    job = job_for("vae", max_steps=20)
    model, _ = train_single_process(job)
    pixels = to_pixels(job.val_pixels[:8])
    bits = bits_per_dim(model, pixels, job.val_labels[:8])
    assert bits.shape == (8,) and torch.isfinite(bits).all() and (bits > 0).all()
    assert torch.equal(bits, bits_per_dim(model, pixels, job.val_labels[:8]))
    assert float(bits.mean()) < 8.0, "better than storing each 8-bit pixel as is"

    job.bundle(model).save(tmp_path / "bundle")
    loaded = ImageGenerator.load(tmp_path / "bundle")
    assert loaded.classes == list(job.classes) and loaded.image_shape == (8, 8, 1)
    assert torch.equal(loaded.sample(["3", "7"], seed=1), job.bundle(model).sample([3, 7], seed=1))


def test_image_config_is_checked_at_the_edge() -> None:
    params = ImageTrainParams.model_validate({"loop": {"max_steps": 10}})
    assert params.loop.max_steps == 10 and params.loop.grad_clip == 0.0, "image defaults kept"
    assert params.model.family == "vae"
    with pytest.raises(ValidationError, match="power of two"):
        DCGANConfig(image_size=12)
    with pytest.raises(ValidationError, match="latent_size"):
        ImageTrainParams.model_validate({"model": {"family": "vae", "latent_size": 0}})
