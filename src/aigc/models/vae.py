"""A conditional VAE with a discretized logistic decoder, family "vae".

    model = build_model(VAEConfig(image_size=8, channels=1, num_classes=10))
    loss = model(pixels, labels, "model", step)   # negative ELBO, bits per dimension
    images = sample(model, torch.tensor([3, 7]), seed=0)   # uint8 (2, H, W, C)
    bits = bits_per_dim(model, pixels, labels)             # (B,): the ELBO bound, per image

Encoder: convolutions 4/2/1 with SiLU halving to 4x4, flattened with a class embedding into the
posterior's mean and log-variance. Decoder: latent z plus the class embedding, projected to
4x4, transposed convolutions doubling back to the image size, out to a mean and a log-scale
per pixel. The likelihood is a logistic discretized to the 256 pixel levels (PixelCNN++'s), so
the negative ELBO is a true bound on -log2 p(x) in bits per dimension. KL warm-up: the KL
term's weight rises linearly from 0 to 1 over `kl_warmup_steps`, so the decoder learns to use
z before the prior pulls the posterior onto it; validation and `bits_per_dim` use weight 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from aigc.models.base import ModelFamily
from aigc.models.configs import VAEConfig
from aigc.models.dcgan import doublings
from aigc.models.image import ImageObjective, inference, seeded_normal, to_uint8, whole

HALF_BIN = 1.0 / 255.0  # half the width of one of 256 levels in [-1, 1]


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        blocks, width = doublings(config.image_size), config.width
        encoder: list[nn.Module] = [nn.Conv2d(config.channels, width, 3, 1, 1), nn.SiLU()]
        for _ in range(blocks):  # (B, w, s, s) -> (B, 2w, s/2, s/2)
            encoder += [nn.Conv2d(width, 2 * width, 4, 2, 1), nn.SiLU()]
            width *= 2
        self.encoder = nn.Sequential(*encoder)
        self.embed = nn.Embedding(config.num_classes, config.latent_size)
        self.posterior = nn.Linear(width * 16 + config.latent_size, 2 * config.latent_size)
        self.project = nn.Linear(2 * config.latent_size, width * 16)
        decoder: list[nn.Module] = []
        for _ in range(blocks):  # (B, w, s, s) -> (B, w/2, 2s, 2s)
            decoder += [nn.SiLU(), nn.ConvTranspose2d(width, width // 2, 4, 2, 1)]
            width //= 2
        decoder += [nn.SiLU(), nn.Conv2d(width, 2 * config.channels, 3, 1, 1)]
        self.decoder = nn.Sequential(*decoder)
        self.width_at_4 = config.width * 2**blocks

    def encode(self, pixels: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.encoder(pixels).flatten(1)  # (B, w * 4 * 4)
        stats = self.posterior(torch.cat([h, self.embed(labels)], dim=1))  # (B, 2Z)
        mean, log_var = stats.chunk(2, dim=1)  # (B, Z) each
        return mean, log_var.clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.project(torch.cat([z, self.embed(labels)], dim=1))  # (B, w * 16)
        out = self.decoder(h.view(-1, self.width_at_4, 4, 4))  # (B, 2C, H, W)
        mean, log_scale = out.chunk(2, dim=1)  # (B, C, H, W) each
        return torch.tanh(mean), log_scale.clamp(min=-7.0)

    def negative_elbo_bits(
        self, pixels: torch.Tensor, labels: torch.Tensor, kl_weight: float = 1.0
    ) -> torch.Tensor:
        """(B,) -ELBO in bits per dimension, the KL term weighted by `kl_weight`."""
        mean, log_var = self.encode(pixels, labels)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()  # (B, Z) reparameterised
        decoded_mean, log_scale = self.decode(z, labels)
        nll = -discretized_logistic_log_prob(pixels, decoded_mean, log_scale).flatten(1).sum(1)
        kl = 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(dim=1)  # (B,) nats
        dimensions = pixels[0].numel()
        return (nll + kl_weight * kl) / (dimensions * math.log(2))

    def forward(
        self, pixels: torch.Tensor, labels: torch.Tensor, phase: str, step: int = 0
    ) -> torch.Tensor:
        warmup = self.config.kl_warmup_steps
        kl_weight = 1.0 if phase == "validation" or warmup == 0 else min(1.0, step / warmup)
        return self.negative_elbo_bits(pixels, labels, kl_weight).mean()


def discretized_logistic_log_prob(
    pixels: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor
) -> torch.Tensor:
    """log P(pixel level) (B, C, H, W) under a logistic discretized to 256 levels in [-1, 1];
    the lowest and highest levels take the tails."""
    centred = pixels - mean
    inverse_scale = torch.exp(-log_scale)
    upper = torch.sigmoid(inverse_scale * (centred + HALF_BIN))
    lower = torch.sigmoid(inverse_scale * (centred - HALF_BIN))
    log_cdf_upper = F.logsigmoid(inverse_scale * (centred + HALF_BIN))  # log P(<= level), lowest
    log_survival_lower = -F.softplus(inverse_scale * (centred - HALF_BIN))  # highest level
    middle = torch.log((upper - lower).clamp(min=1e-12))
    return torch.where(
        pixels < -0.999, log_cdf_upper, torch.where(pixels > 0.999, log_survival_lower, middle)
    )


def bits_per_dim(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) the negative ELBO of each image in bits per dimension: an upper bound on -log2 p(x)
    per pixel channel. `pixels` float (B, C, H, W) in [-1, 1]; the posterior draw comes from a
    fixed seed, so the same images give the same figures."""
    with inference(model, labels) as (module, labels, device):  # noqa: SIM117 (needs device)
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(0)
            return module.negative_elbo_bits(pixels.to(device), labels).cpu()


def sample(model: nn.Module, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 (N, H, W, C): the decoder's mean image for a prior draw z per label."""
    with inference(model, labels) as (module, labels, device):
        z = seeded_normal((labels.size(0), module.config.latent_size), seed, device)
        return to_uint8(module.decode(z, labels)[0])


FAMILY = ModelFamily(
    name="vae",
    config_class=VAEConfig,
    model_class=VAE,
    objective=ImageObjective({"model": whole}, loss_phase="model"),
    sampler=sample,
)
