"""The image modality's training job: pixels and labels, prepared on the driver.

    inputs = prepare_training(dataset, params, root)   # what the shared train stage runs
    job = prepare_image_job(train_split, validation_split, params.image.train)

`ImageJob.loaders(rank, world_size)` gives `(pixels (B, C, H, W) in [-1, 1], labels (B,))`;
`bundle(model)` the ImageGenerator saved at the end (model and class names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from aigc.config import ImageTrainParams, LoopParams, Params
from aigc.image.dataset import read_labeled
from aigc.models.configs import ImageConfigBase
from aigc.train.job import Job, TrainingInputs


@dataclass(frozen=True)
class ImageJob(Job):
    model: ImageConfigBase  # the family's config, image size, channels, classes set from data
    classes: tuple[str, ...]
    train_pixels: torch.Tensor  # (N, H, W, C) uint8
    train_labels: torch.Tensor  # (N,) int64, indices into classes
    val_pixels: torch.Tensor  # (M, H, W, C) uint8
    val_labels: torch.Tensor  # (M,) int64
    batch_size: int
    seed: int
    loop: LoopParams
    device: str = "cpu"

    def loaders(self, rank: int, world_size: int) -> tuple[DataLoader, DataLoader]:
        from aigc.models.image import to_pixels

        if len(self.train_labels) < self.batch_size * world_size:
            raise ValueError(
                f"the train split has {len(self.train_labels)} images, fewer than one batch "
                f"of {self.batch_size} per worker; add data or lower image.train.batch_size"
            )
        train_set = TensorDataset(to_pixels(self.train_pixels), self.train_labels)
        val_set = TensorDataset(to_pixels(self.val_pixels), self.val_labels)
        return self._loaders(train_set, val_set, rank, world_size)

    def bundle(self, model: nn.Module):
        from aigc.image.generator import ImageGenerator

        return ImageGenerator(model=model, classes=list(self.classes))


def prepare_image_job(
    train: Any, validation: Any, params: ImageTrainParams, device: str = "cpu"
) -> ImageJob:
    """A job from two `ImageSplit`s (uint8 pixels (N, H, W, C), int64 labels, class names)."""
    _, height, width, channels = train.pixels.shape
    if height != width or validation.pixels.shape[1:] != train.pixels.shape[1:]:
        raise ValueError(
            f"train images are {height}x{width}x{channels}, validation images "
            f"{'x'.join(map(str, validation.pixels.shape[1:]))}: the models need square images "
            "of one size; set the image size in image.clean"
        )
    if list(train.classes) != list(validation.classes):
        raise ValueError("the train and validation splits name different classes")
    return ImageJob(
        model=params.model.with_data(height, channels, len(train.classes)),
        classes=tuple(train.classes),
        train_pixels=torch.as_tensor(train.pixels, dtype=torch.uint8),
        train_labels=torch.as_tensor(train.labels, dtype=torch.long),
        val_pixels=torch.as_tensor(validation.pixels, dtype=torch.uint8),
        val_labels=torch.as_tensor(validation.labels, dtype=torch.long),
        batch_size=params.batch_size,
        seed=params.seed,
        loop=params.loop,
        device=device,
    )


def prepare_training(dataset: Any, params: Params, root: Path) -> TrainingInputs:
    """The image job from a data version, and what its run records: images per split."""
    splits = read_labeled(dataset.path)
    job = prepare_image_job(splits["train"], splits["validation"], params.image.train)
    return TrainingInputs(
        job=job,
        profile={split: len(images) for split, images in splits.items()},
        first_metrics={"train_images": float(len(splits["train"]))},
        tags={},
        sections=frozenset({"image"}),
    )
