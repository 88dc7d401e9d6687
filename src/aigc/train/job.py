"""A training job: everything a worker needs, prepared once on the driver, no Ray in sight.

    inputs = modality.prepare_training(dataset, params, root)   # a job and what to record
    model, result = train_single_process(inputs.job)            # single process

Each modality makes its own job (aigc.text.training.TextJob: tokenizer and token streams;
aigc.image.training.ImageJob: pixels and labels). A job is a plain picklable value (the
tokenizer travels as JSON, token streams and pixels as tensors), so `aigc.ray` ships it to
every worker, and the same job runs in one process for tests and GPU benchmarks. A job knows
its modality, the runner does not: `job.loaders(rank, world_size)` builds its batches and
`job.bundle(model)` what is saved at the end. Shuffling uses a DistributedSampler with an
explicit rank and world size, so one Ray worker sees exactly the batches the single process
sees.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from aigc.config import LoopParams
from aigc.models.base import build_model, get_family
from aigc.train.loop import LoopHooks, LoopResult, train_loop


@dataclass(frozen=True)
class TrainingInputs:
    """What a modality prepares for the shared train stage: the job, and what its MLflow run
    records besides the params (`sections`, the sections of the params it logs and hashes)."""

    job: Job
    profile: dict[str, int]  # rows per split, the run's dataset profile
    first_metrics: dict[str, float]  # logged at step 0 (train tokens, train images)
    tags: dict[str, str]  # e.g. a fine-tune's base
    sections: frozenset[str]


class Job:
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
