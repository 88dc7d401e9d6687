"""A training job: everything a worker needs, prepared once on the driver, no Ray in sight.

    job = prepare_job(train_frame, validation_frame, params.train)   # text: tokenizer + tokens
    job = prepare_image_job(train_split, validation_split, params.image.train)   # images
    model, result = train_single_process(job)                        # single process

A job is a plain picklable value (the tokenizer travels as JSON, token streams and pixels as
tensors), so `aigc.ray` ships it to every worker, and the same job runs in one process for
tests and GPU benchmarks. A job knows its modality, the runner does not: `job.loaders(rank,
world_size)` builds its batches (text: `(x, y)` token blocks; images: `(pixels (B, C, H, W)
in [-1, 1], labels (B,))`) and `job.bundle(model)` what is saved at the end (a TextGenerator
with its tokenizer; an ImageGenerator with its class names). Shuffling uses a
DistributedSampler with an explicit rank and world size in both cases, so one Ray worker sees
exactly the batches the single process sees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, TensorDataset

from aigc.config import ImageTrainParams, LoopParams, TrainParams
from aigc.models.base import build_model, get_family, unwrap_model
from aigc.models.configs import HFConfig, ImageConfigBase, ModelConfigBase
from aigc.text.dataset import BlockDataset, encode_corpus
from aigc.text.tokenizer import TextTokenizer
from aigc.train.loop import LoopHooks, LoopResult, train_loop


class _Job:
    """What every job shares; a job adds `loaders(rank, world_size)` and `bundle(model)`."""

    model: Any
    batch_size: int
    seed: int
    loop: LoopParams
    device: str

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def unit(self) -> str:
        """What the loop counts: "tokens" for text, "images" for image families."""
        return get_family(self.family).objective.unit

    @property
    def ddp_options(self) -> dict[str, Any]:
        return get_family(self.family).objective.ddp_options

    def seed_for(self, rank: int) -> int:
        # Each rank draws its own dropout masks and noise; rank 0 of any world size matches a
        # single process, so one Ray worker reproduces the single-process run exactly.
        return self.seed + rank

    def _loaders(
        self, train_set: Dataset, val_set: Dataset, rank: int, world_size: int
    ) -> tuple[DataLoader, DataLoader]:
        sampler = DistributedSampler(
            train_set,
            num_replicas=world_size,
            rank=rank,
            shuffle=True,
            seed=self.seed,
            drop_last=True,
        )
        val_sampler = DistributedSampler(
            val_set, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False
        )
        train_loader = DataLoader(
            train_set, batch_size=self.batch_size, sampler=sampler, drop_last=True
        )
        val_loader = DataLoader(val_set, batch_size=self.batch_size, sampler=val_sampler)
        return train_loader, val_loader


@dataclass(frozen=True)
class TrainJob(_Job):
    model: ModelConfigBase  # the family's config, vocab_size set from the tokenizer
    tokenizer_json: str
    train_tokens: torch.Tensor  # (N,) int32
    val_tokens: torch.Tensor  # (M,) int32
    batch_size: int
    seed: int
    loop: LoopParams
    device: str = "cpu"

    @property
    def block_size(self) -> int:
        return self.model.block_size

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer.from_json(self.tokenizer_json)

    def loaders(self, rank: int, world_size: int) -> tuple[DataLoader, DataLoader]:
        train_set = BlockDataset(self.train_tokens.long(), self.block_size)
        val_set = BlockDataset(self.val_tokens.long(), self.block_size)
        if len(train_set) == 0:
            raise ValueError(
                f"the train split has fewer than block_size={self.block_size} tokens; "
                "add data or lower train.model.block_size"
            )
        return self._loaders(train_set, val_set, rank, world_size)

    def bundle(self, model: nn.Module):
        from aigc.generator import TextGenerator

        finalize = get_family(self.family).finalize
        if finalize is not None:
            model = finalize(unwrap_model(model))
        return TextGenerator(model=model, tokenizer=self.tokenizer(), config=model.config)


@dataclass(frozen=True)
class ImageJob(_Job):
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
        from aigc.models.image import ImageGenerator

        return ImageGenerator(model=model, classes=list(self.classes))


def prepare_job(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: TrainParams,
    device: str = "cpu",
    root: Path = Path("."),
) -> TrainJob:
    """Train the tokenizer on the train split (a pretrained base brings its own, `root` being
    where its relative path starts) and encode both splits into token streams."""
    labels = sorted(set(train["label"]) | set(validation["label"]))
    model = params.model
    if isinstance(model, HFConfig):
        from aigc.models.hf import describe_base

        base = describe_base(model.path, root)
        tokenizer = TextTokenizer.from_pretrained(base.folder, labels)
        model = base.config(model, tokenizer.vocab_size)
    else:
        tokenizer = TextTokenizer.train(
            train["text"].tolist(),
            labels,
            vocab_size=params.tokenizer.vocab_size,
            min_frequency=params.tokenizer.min_frequency,
        )
        model = model.with_vocab(tokenizer.vocab_size)
    encode = lambda frame: encode_corpus(  # noqa: E731
        frame["text"].tolist(), frame["label"].tolist(), tokenizer
    ).to(torch.int32)
    return TrainJob(
        model=model,
        tokenizer_json=tokenizer.to_json(),
        train_tokens=encode(train),
        val_tokens=encode(validation),
        batch_size=params.batch_size,
        seed=params.seed,
        loop=params.loop,
        device=device,
    )


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


Job = TrainJob | ImageJob


def with_loop(job: Job, **changes: Any) -> Job:
    """The same job with some loop settings changed (budgets in tests and benchmarks)."""
    return replace(job, loop=LoopParams.model_validate(job.loop.model_dump() | changes))


def build_model_for(job: Job) -> nn.Module:
    """The model a training run starts from: seeded, from the family's own starting weights."""
    return build_model(job.model, seed=job.seed, initialize=True)


def build_loaders(job: Job, rank: int, world_size: int) -> tuple[DataLoader, DataLoader]:
    return job.loaders(rank, world_size)


def train_single_process(
    job: Job, hooks: LoopHooks | None = None, resume_state: dict | None = None
) -> tuple[nn.Module, LoopResult]:
    """The whole job in this process: the path tests and GPU benchmarks take."""
    model = build_model_for(job)
    train_loader, val_loader = build_loaders(job, rank=0, world_size=1)
    result = run_loop(job, model, train_loader, val_loader, hooks, resume_state, rank=0)
    return model, result


def run_loop(
    job: Job,
    model: nn.Module,
    train_loader: DataLoader,
    val_loader: DataLoader,
    hooks: LoopHooks | None,
    resume_state: dict | None,
    rank: int,
) -> LoopResult:
    """The training loop on `job`'s settings, seeded for `rank`: one process or a Ray worker."""
    return train_loop(
        model,
        train_loader,
        val_loader,
        job.loop,
        hooks,
        resume_state,
        seed=job.seed_for(rank),
        device=job.device,
    )
