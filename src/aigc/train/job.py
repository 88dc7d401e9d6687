"""A training job: everything a worker needs, prepared once on the driver, no Ray in sight.

    job = prepare_job(train_frame, validation_frame, params.train)   # tokenizer + tokens
    model, result = train_single_process(job)                        # single process

`TrainJob` is a plain picklable value (the tokenizer travels as JSON, the token streams as
int32 tensors), so the Ray runner ships it to every worker, and the same job runs in one
process for tests and GPU benchmarks. Shuffling uses a DistributedSampler with an explicit
rank and world size in both cases, so one Ray worker sees exactly the batches the single
process sees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from aigc.config import LoopParams, TrainParams
from aigc.models.base import build_model
from aigc.models.configs import ModelConfigBase
from aigc.text.dataset import BlockDataset, encode_corpus
from aigc.text.tokenizer import TextTokenizer
from aigc.train.loop import LoopHooks, LoopResult, train_loop


@dataclass(frozen=True)
class TrainJob:
    model: ModelConfigBase  # the family's config, vocab_size set from the tokenizer
    tokenizer_json: str
    train_tokens: torch.Tensor  # (N,) int32
    val_tokens: torch.Tensor  # (M,) int32
    batch_size: int
    seed: int
    loop: LoopParams
    device: str = "cpu"

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def block_size(self) -> int:
        return self.model.block_size

    def tokenizer(self) -> TextTokenizer:
        return TextTokenizer.from_json(self.tokenizer_json)

    def seed_for(self, rank: int) -> int:
        # Each rank draws its own dropout masks; rank 0 of any world size matches a single
        # process, so one Ray worker reproduces the single-process run exactly.
        return self.seed + rank


def prepare_job(
    train: pd.DataFrame, validation: pd.DataFrame, params: TrainParams, device: str = "cpu"
) -> TrainJob:
    """Train the tokenizer on the train split and encode both splits into token streams."""
    labels = sorted(set(train["label"]) | set(validation["label"]))
    tokenizer = TextTokenizer.train(
        train["text"].tolist(),
        labels,
        vocab_size=params.tokenizer.vocab_size,
        min_frequency=params.tokenizer.min_frequency,
    )
    encode = lambda frame: encode_corpus(  # noqa: E731
        frame["text"].tolist(), frame["label"].tolist(), tokenizer
    ).to(torch.int32)
    return TrainJob(
        model=params.model.with_vocab(tokenizer.vocab_size),
        tokenizer_json=tokenizer.to_json(),
        train_tokens=encode(train),
        val_tokens=encode(validation),
        batch_size=params.batch_size,
        seed=params.seed,
        loop=params.loop,
        device=device,
    )


def with_loop(job: TrainJob, **changes: Any) -> TrainJob:
    """The same job with some loop settings changed (budgets in tests and benchmarks)."""
    return replace(job, loop=LoopParams.model_validate(job.loop.model_dump() | changes))


def build_model_for(job: TrainJob) -> nn.Module:
    return build_model(job.model, seed=job.seed)


def build_loaders(job: TrainJob, rank: int, world_size: int) -> tuple[DataLoader, DataLoader]:
    train_set = BlockDataset(job.train_tokens.long(), job.block_size)
    val_set = BlockDataset(job.val_tokens.long(), job.block_size)
    if len(train_set) == 0:
        raise ValueError(
            f"the train split has fewer than block_size={job.block_size} tokens; "
            "add data or lower train.model.block_size"
        )
    sampler = DistributedSampler(
        train_set,
        num_replicas=world_size,
        rank=rank,
        shuffle=True,
        seed=job.seed,
        drop_last=True,
    )
    val_sampler = DistributedSampler(
        val_set, num_replicas=world_size, rank=rank, shuffle=False, drop_last=False
    )
    train_loader = DataLoader(
        train_set, batch_size=job.batch_size, sampler=sampler, drop_last=True
    )
    val_loader = DataLoader(val_set, batch_size=job.batch_size, sampler=val_sampler)
    return train_loader, val_loader


def train_single_process(
    job: TrainJob, hooks: LoopHooks | None = None, resume_state: dict | None = None
) -> tuple[nn.Module, LoopResult]:
    """The whole job in this process: the path tests and GPU benchmarks take."""
    model = build_model_for(job)
    train_loader, val_loader = build_loaders(job, rank=0, world_size=1)
    result = run_loop(job, model, train_loader, val_loader, hooks, resume_state, rank=0)
    return model, result


def run_loop(
    job: TrainJob,
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
