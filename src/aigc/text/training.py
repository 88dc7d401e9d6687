"""The text modality's training job: tokenizer and token streams, prepared on the driver.

    inputs = prepare_training(dataset, params, root)   # what the shared train stage runs
    job = prepare_job(train_frame, validation_frame, params.train)   # the job alone

`TextJob.loaders(rank, world_size)` gives `(x, y)` token blocks; `bundle(model)` the
TextGenerator saved at the end (model and tokenizer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from aigc import timing
from aigc.config import LoopParams, Params, TrainParams
from aigc.data.records import SPLITS
from aigc.models.base import get_family, unwrap_model
from aigc.models.configs import HFConfig, ModelConfigBase
from aigc.text.dataset import BlockDataset, encode_corpus
from aigc.text.tokenizer import TextTokenizer
from aigc.train.job import Job, TrainingInputs


@dataclass(frozen=True)
class TextJob(Job):
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
        from aigc.text.generator import TextGenerator

        finalize = get_family(self.family).finalize
        if finalize is not None:
            model = finalize(unwrap_model(model))
        return TextGenerator(model=model, tokenizer=self.tokenizer(), config=model.config)


def prepare_job(
    train: pd.DataFrame,
    validation: pd.DataFrame,
    params: TrainParams,
    device: str = "cpu",
    root: Path = Path("."),
) -> TextJob:
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
    return TextJob(
        model=model,
        tokenizer_json=tokenizer.to_json(),
        train_tokens=encode(train),
        val_tokens=encode(validation),
        batch_size=params.batch_size,
        seed=params.seed,
        loop=params.loop,
        device=device,
    )


def prepare_training(dataset: Any, params: Params, root: Path) -> TrainingInputs:
    """The text job from a data version (tokenizer trained and splits encoded here), and
    what its run records: rows per split, train tokens, a fine-tune's base."""
    frames = dataset.splits()
    with timing.timed("tokenizer and encoding"):
        job = prepare_job(frames[0], frames[1], params.train, root=root)
    return TrainingInputs(
        job=job,
        profile={split: len(frame) for split, frame in zip(SPLITS, frames, strict=True)},
        first_metrics={"train_tokens": float(job.train_tokens.numel())},
        tags=base_lineage(job.model),
        sections=frozenset({"train", "evaluate", "split"}),
    )


def base_lineage(config: object) -> dict[str, str]:
    """A fine-tuned model's base (path, architecture, size, content hash) as run tags."""
    if not isinstance(config, HFConfig):
        return {}
    from aigc.models.hf import lineage_tags

    return lineage_tags(config)
