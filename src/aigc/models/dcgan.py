"""A class-conditional DCGAN (after Radford et al. and PyTorch's DCGAN example), family "dcgan".

    model = build_model(DCGANConfig(image_size=8, channels=1, num_classes=10))
    loss = model(pixels, labels, "discriminator", step)   # then "generator": two optimizers
    images = sample(model, torch.tensor([3, 7]), seed=0)    # uint8 (2, H, W, C)

Generator: noise z and a class embedding, projected by a transposed convolution to 4x4, then
one up-block (transposed conv 4/2/1, BatchNorm, ReLU) per doubling to the configured size, a
3x3 convolution to the image channels and tanh. Discriminator: a conv 4/2/1 with LeakyReLU(0.2)
per halving down to 4x4 (BatchNorm on all but the first), then a linear score plus a class
projection (Miyato & Koyama's projection discriminator: score + <embed(y), features>), which
conditions more sharply than concatenated label maps. The loss is the non-saturating one:
D minimises softplus(-D(real)) + softplus(D(fake)), G minimises softplus(-D(fake)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from aigc.models.base import ModelFamily
from aigc.models.configs import DCGANConfig
from aigc.models.image import ImageObjective, inference, seeded_normal, to_uint8


def doublings(image_size: int) -> int:
    """Up-blocks from 4x4 to `image_size` (a power of two >= 8): 8 -> 1, 32 -> 3."""
    return image_size.bit_length() - 3


class Generator(nn.Module):
    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        blocks = doublings(config.image_size)
        width = config.generator_width * 2**blocks  # channels at 4x4
        self.embed = nn.Embedding(config.num_classes, config.latent_size)
        self.project = nn.Sequential(  # (B, 2Z, 1, 1) -> (B, width, 4, 4)
            nn.ConvTranspose2d(2 * config.latent_size, width, 4, 1, 0, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        layers = []
        for _ in range(blocks):  # each: (B, w, s, s) -> (B, w/2, 2s, 2s)
            layers += [
                nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(width // 2),
                nn.ReLU(inplace=True),
            ]
            width //= 2
        self.up = nn.Sequential(*layers)
        self.to_image = nn.Conv2d(width, config.channels, 3, 1, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = torch.cat([z, self.embed(labels)], dim=1)[:, :, None, None]  # (B, 2Z, 1, 1)
        h = self.up(self.project(h))  # (B, ngf, H, W)
        return torch.tanh(self.to_image(h))  # (B, C, H, W) in [-1, 1]


class Discriminator(nn.Module):
    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        width = config.discriminator_width
        layers: list[nn.Module] = [
            nn.Conv2d(config.channels, width, 4, 2, 1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        for _ in range(doublings(config.image_size) - 1):  # (B, w, s, s) -> (B, 2w, s/2, s/2)
            layers += [
                nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
                nn.BatchNorm2d(2 * width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            width *= 2
        self.features = nn.Sequential(*layers)
        self.score = nn.Linear(width * 16, 1)
        self.embed = nn.Embedding(config.num_classes, width * 16)

    def forward(self, pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.features(pixels).flatten(1)  # (B, w * 4 * 4)
        projection = (self.embed(labels) * h).sum(dim=1)  # (B,)
        return self.score(h).squeeze(1) + projection  # (B,) logits: real > 0


class DCGAN(nn.Module):
    def __init__(self, config: DCGANConfig) -> None:
        super().__init__()
        self.config = config
        self.generator = Generator(config)
        self.discriminator = Discriminator(config)
        self.apply(_init_weights)

    def generate(self, labels: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is None:  # from the global RNG: the training stream the loop seeds and saves
            z = torch.randn(labels.size(0), self.config.latent_size, device=labels.device)
        return self.generator(z, labels)  # (B, C, H, W)

    def forward(
        self, pixels: torch.Tensor, labels: torch.Tensor, phase: str, step: int = 0
    ) -> torch.Tensor:
        if phase in ("discriminator", "validation"):
            with torch.no_grad():
                fake = self.generate(labels)  # (B, C, H, W), no gradient into G
            real_loss = F.softplus(-self.discriminator(pixels, labels)).mean()
            fake_loss = F.softplus(self.discriminator(fake, labels)).mean()
            return real_loss + fake_loss
        if phase == "generator":
            return F.softplus(-self.discriminator(self.generate(labels), labels)).mean()
        raise ValueError(f"dcgan has no phase {phase!r}: discriminator, generator, validation")


def _init_weights(module: nn.Module) -> None:
    # DCGAN's initialisation: N(0, 0.02) convolutions, BatchNorm gains N(1, 0.02).
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear | nn.Embedding):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if getattr(module, "bias", None) is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def sample(model: nn.Module, labels: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 (N, H, W, C): one image per label, from noise drawn from `seed` alone. In eval
    mode: BatchNorm's running statistics, so an image does not depend on its batch."""
    with inference(model, labels) as (module, labels, device):
        z = seeded_normal((labels.size(0), module.config.latent_size), seed, device)
        return to_uint8(module.generate(labels, z))


FAMILY = ModelFamily(
    name="dcgan",
    config_class=DCGANConfig,
    model_class=DCGAN,
    objective=ImageObjective(
        {
            "discriminator": lambda module: module.discriminator,
            "generator": lambda module: module.generator,
        },
        loss_phase="generator",
        # The discriminator's step leaves the generator without gradients.
        ddp_options={"find_unused_parameters": True},
    ),
    sampler=sample,
)
