"""A class-conditional denoising diffusion model with a small U-Net, family "ddpm".

    model = build_model(DDPMConfig(image_size=8, channels=1, num_classes=10))
    loss = model(pixels, labels, "model", step)      # the denoising loss: MSE on the noise
    images = sample(model, torch.tensor([3, 7]), seed=0, steps=20, guidance=1.0)

Training (Ho et al.): x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps for a random t, and the
network predicts eps from (x_t, t, class); a share `label_dropout` of the labels is replaced by
a "no class" label, so one network also predicts unconditionally, which classifier-free
guidance needs (Ho & Salimans): eps = (1 + w) eps(x, class) - w eps(x, none). Linear betas,
given for 1000 steps and scaled by 1000 / T, so a short chain still ends in noise. Sampling:
DDIM (Song et al.), deterministic (eta = 0), on `steps` evenly spaced time steps.

U-Net: a 3x3 conv in; per halving down to 4x4 a residual block and a strided conv (channels
double); a residual block at 4x4; back up with transposed convs, each followed by a residual
block over the skip connection; GroupNorm, SiLU and a 3x3 conv out. Residual blocks add the
time and class embedding between their two convolutions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from aigc.models.base import ModelFamily
from aigc.models.configs import DDPMConfig
from aigc.models.dcgan import doublings
from aigc.models.image import ImageObjective, inference, seeded_normal, to_uint8, whole


def _groups(channels: int) -> int:
    return math.gcd(8, channels)


class ResidualBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, embedding: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, 1, 1)
        self.condition = nn.Linear(embedding, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, out, s, s)
        h = h + self.condition(embedding)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class DDPM(nn.Module):
    def __init__(self, config: DDPMConfig) -> None:
        super().__init__()
        self.config = config
        width, embedding = config.width, 4 * config.width
        self.time_mlp = nn.Sequential(
            nn.Linear(width, embedding), nn.SiLU(), nn.Linear(embedding, embedding)
        )
        self.class_embedding = nn.Embedding(config.num_classes + 1, embedding)  # last: none
        self.conv_in = nn.Conv2d(config.channels, width, 3, 1, 1)
        self.down_blocks, self.downsamples = nn.ModuleList(), nn.ModuleList()
        channels = width
        for _ in range(doublings(config.image_size)):  # (B, c, s, s) -> (B, 2c, s/2, s/2)
            self.down_blocks.append(ResidualBlock(channels, channels, embedding))
            self.downsamples.append(nn.Conv2d(channels, 2 * channels, 4, 2, 1))
            channels *= 2
        self.middle = ResidualBlock(channels, channels, embedding)
        self.upsamples, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for _ in range(doublings(config.image_size)):  # (B, c, s, s) -> (B, c/2, 2s, 2s)
            self.upsamples.append(nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1))
            self.up_blocks.append(ResidualBlock(channels, channels // 2, embedding))
            channels //= 2
        self.norm_out = nn.GroupNorm(_groups(channels), channels)
        self.conv_out = nn.Conv2d(channels, config.channels, 3, 1, 1)
        scale = 1000 / config.timesteps
        betas = torch.linspace(
            config.beta_start * scale, config.beta_end * scale, config.timesteps
        ).clamp(max=0.999)
        # Derived from the config, so not saved: (T,) cumulative signal share abar_t.
        self.register_buffer("alpha_bar", torch.cumprod(1.0 - betas, dim=0), persistent=False)

    def denoise(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The predicted noise (B, C, H, W) in x_t (B, C, H, W) at steps t (B,), classes (B,)
        (`num_classes` meaning none)."""
        embedding = self.time_mlp(_timestep_embedding(t, self.config.width))  # (B, E)
        embedding = embedding + self.class_embedding(labels)
        h = self.conv_in(x)  # (B, w, H, W)
        skips = []
        for block, downsample in zip(self.down_blocks, self.downsamples, strict=True):
            h = block(h, embedding)
            skips.append(h)
            h = downsample(h)  # (B, 2c, s/2, s/2)
        h = self.middle(h, embedding)  # (B, c, 4, 4)
        for upsample, block in zip(self.upsamples, self.up_blocks, strict=True):
            h = torch.cat([upsample(h), skips.pop()], dim=1)  # (B, c, 2s, 2s): up + skip
            h = block(h, embedding)  # (B, c/2, 2s, 2s)
        return self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)

    def forward(
        self, pixels: torch.Tensor, labels: torch.Tensor, phase: str, step: int = 0
    ) -> torch.Tensor:
        batch = pixels.size(0)
        t = torch.randint(0, self.config.timesteps, (batch,), device=pixels.device)  # (B,)
        noise = torch.randn_like(pixels)
        signal = self.alpha_bar[t].view(batch, 1, 1, 1)
        noisy = signal.sqrt() * pixels + (1.0 - signal).sqrt() * noise  # (B, C, H, W)
        dropped = torch.rand(batch, device=pixels.device) < self.config.label_dropout
        if phase == "validation":  # the conditional loss only
            dropped = torch.zeros_like(dropped)
        labels = labels.masked_fill(dropped, self.config.num_classes)
        return F.mse_loss(self.denoise(noisy, t, labels), noise)


def _timestep_embedding(t: torch.Tensor, dimensions: int) -> torch.Tensor:
    """Sinusoidal embedding (B, dimensions) of integer steps t (B,), as in the Transformer."""
    half = dimensions // 2
    frequencies = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * frequencies[None, :]  # (B, half)
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sample(
    model: nn.Module,
    labels: torch.Tensor,
    seed: int,
    steps: int | None = None,
    guidance: float | None = None,
) -> torch.Tensor:
    """uint8 (N, H, W, C) by deterministic DDIM from noise drawn from `seed`; `steps` and
    `guidance` default to the config's `sample_steps` and `guidance`."""
    with inference(model, labels) as (module, labels, device):
        config = module.config
        steps = min(steps or config.sample_steps, config.timesteps)
        guidance = config.guidance if guidance is None else guidance
        size, count = config.image_size, labels.size(0)
        x = seeded_normal((count, config.channels, size, size), seed, device)
        none = torch.full_like(labels, config.num_classes)
        times = torch.linspace(config.timesteps - 1, 0, steps).round().long().tolist()
        for index, t in enumerate(times):
            at = torch.full((count,), t, device=device, dtype=torch.long)
            if guidance:
                both = module.denoise(
                    torch.cat([x, x]), torch.cat([at, at]), torch.cat([labels, none])
                )
                conditional, unconditional = both.chunk(2)
                noise = (1 + guidance) * conditional - guidance * unconditional
            else:
                noise = module.denoise(x, at, labels)
            signal = module.alpha_bar[t]
            previous = module.alpha_bar[times[index + 1]] if index + 1 < steps else 1.0
            previous = torch.as_tensor(previous, device=device)
            x0 = ((x - (1 - signal).sqrt() * noise) / signal.sqrt()).clamp(-1, 1)
            noise = (x - signal.sqrt() * x0) / (1 - signal).sqrt()  # consistent with clamped x0
            x = previous.sqrt() * x0 + (1 - previous).sqrt() * noise
        return to_uint8(x)


FAMILY = ModelFamily(
    name="ddpm",
    config_class=DDPMConfig,
    model_class=DDPM,
    objective=ImageObjective({"model": whole}, loss_phase="model"),
    sampler=sample,
)
