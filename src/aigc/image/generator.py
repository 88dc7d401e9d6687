"""A trained image generator: the model, its class names, saved as a bundle; it samples images.

    generator = ImageGenerator(model, classes=["0", ..., "9"])
    generator.save("bundle")                                  # model.pt: weights, config, classes
    images = ImageGenerator.load("bundle").sample(["3", "7"], seed=0)   # uint8 (2, H, W, C)

The families (aigc.models: dcgan, vae, ddpm) make the model and its sampler; samplers return
uint8 (N, H, W, C), the layout of `ImageSplit.pixels`, and depend only on their seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc.errors import UserError
from aigc.models.checkpoint import MODEL_FILE, load_model, save_checkpoint
from aigc.models.configs import ImageConfigBase


class UnknownClass(UserError, ValueError):
    """A class name the generator was not trained on; its message names the classes it knows.

    Also a ValueError, which is what callers of a library function expect for a bad argument."""


@dataclass
class ImageGenerator:
    """A trained image generator: the model, its class names and its image shape (H, W, C)."""

    model: nn.Module
    classes: list[str]
    extra: dict = field(default_factory=dict)

    @property
    def config(self) -> ImageConfigBase:
        return self.model.config

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.config.image_size, self.config.image_size, self.config.channels)

    @classmethod
    def load(cls, directory: str | Path, device: str = "cpu") -> ImageGenerator:
        model, _, _, extra = load_model(Path(directory) / MODEL_FILE, map_location=device)
        extra = dict(extra)
        classes = list(extra.pop("classes"))
        extra.pop("image_shape", None)
        return cls(model=model.eval(), classes=classes, extra=extra)

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        extra = self.extra | {"classes": list(self.classes), "image_shape": list(self.image_shape)}
        save_checkpoint(directory / MODEL_FILE, self.model, self.config, extra)
        return directory

    def class_index(self, label: str) -> int:
        """The index of class `label`; UnknownClass, naming the known ones, if there is none."""
        if label not in self.classes:
            raise UnknownClass(f"unknown class {label!r}; this model's classes are {self.classes}")
        return self.classes.index(label)

    def sample(self, labels: Sequence[str | int], seed: int, **options: Any) -> torch.Tensor:
        """uint8 (N, H, W, C) images of the given classes (names or indices); same seed, same
        images. Options are the family's (ddpm: `steps`, `guidance`)."""
        from aigc.models.base import get_family

        indices = [
            self.class_index(label) if isinstance(label, str) else label for label in labels
        ]
        sampler = get_family(self.family).sampler
        return sampler(self.model, torch.tensor(indices, dtype=torch.long), seed, **options)
