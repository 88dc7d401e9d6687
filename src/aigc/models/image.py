"""What the image families share: their objective, pixel conversions and seeded sampling.

The generator that holds a trained model and its classes is aigc.image.generator. An image
family's module takes `forward(pixels (B, C, H, W) in [-1, 1], labels (B,), phase, step) ->
loss`: `phase` names the optimizer whose loss is wanted ("validation" for the held-out loss),
`step` the optimizer step (a VAE's KL warm-up). Every loss goes through that one `forward`, so
DistributedDataParallel sees each pass. Samplers return uint8 (N, H, W, C), the layout of
`ImageSplit.pixels`, and depend only on their seed, not on the global RNG.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from aigc.models.configs import ImageConfigBase
from aigc.models.objective import Objective, Rates, make_optimizer


class ImageObjective(Objective):
    """Losses from the module's `forward(pixels, labels, phase, step)`; one or more optimizers,
    each over the parameters of one submodule (or the whole module)."""

    unit = "images"

    def __init__(
        self,
        phases: dict[str, Callable[[nn.Module], nn.Module]],
        loss_phase: str,
        ddp_options: dict[str, Any] | None = None,
    ) -> None:
        self.phases = phases  # optimizer name -> the (sub)module whose parameters it updates
        self.loss_phase = loss_phase
        self.ddp_options = dict(ddp_options or {})

    def make_optimizers(self, module: nn.Module, loop: Rates) -> dict[str, Any]:
        """The family's own rates (its config's), not the loop's: a GAN wants Adam at 2e-4."""
        config: ImageConfigBase = module.config
        own = Rates(config.lr, config.betas, config.weight_decay)
        return {
            name: make_optimizer(part(module), own, own=True) for name, part in self.phases.items()
        }

    def loss(self, phase: str, model: nn.Module, batch: tuple, step: int) -> torch.Tensor:
        pixels, labels = batch
        return model(pixels, labels, phase, step)

    def count(self, batch: tuple) -> int:
        return batch[0].size(0)

    def validation_loss(self, model: nn.Module, batch: tuple) -> tuple[float, int]:
        pixels, labels = batch
        return float(model(pixels, labels, "validation", 0)) * pixels.size(0), pixels.size(0)


def whole(module: nn.Module) -> nn.Module:
    return module


def to_pixels(images: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1]: the models' convention."""
    return images.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(pixels: torch.Tensor) -> torch.Tensor:
    """float (N, C, H, W) in [-1, 1] -> uint8 (N, H, W, C) on the CPU, rounded and clipped."""
    scaled = ((pixels.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255)
    return scaled.to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def seeded_normal(shape: Sequence[int], seed: int, device: torch.device) -> torch.Tensor:
    """Standard normal draws from `seed` alone (drawn on the CPU, so any device agrees)."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.randn(*shape, generator=generator).to(device)


def check_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.dim() != 1 or (labels.numel() and (labels.min() < 0 or labels.max() >= num_classes)):
        raise ValueError(f"labels must be (N,) class indices in [0, {num_classes}), got {labels}")
    return labels


@contextlib.contextmanager
def inference(
    model: nn.Module, labels: torch.Tensor
) -> Iterator[tuple[nn.Module, torch.Tensor, torch.device]]:
    """(the unwrapped module in eval mode, checked labels on its device, the device); the
    module's mode is restored afterwards. What every sampler starts with."""
    from aigc.models.base import unwrap_model

    module = unwrap_model(model)
    labels = check_labels(labels, module.config.num_classes)
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            yield module, labels.to(device), device
    finally:
        module.train(was_training)
