"""From labeled documents to training blocks, and the bits-per-character yardstick.

Usage:

    tokens = encode_corpus(texts, labels, tokenizer)          # one long 1-D LongTensor
    dataset = BlockDataset(tokens, block_size=256)            # (x, y) pairs, y = x shifted by one
    loader = DataLoader(dataset, batch_size=32, sampler=EpochShuffleSampler(len(dataset), seed=0))

Documents are concatenated as `<|label:NAME|> text <|endoftext|>` so that a model learns to
start writing about a topic after its label token and to end a document; a block may span a
document boundary, as in GPT-2 training.

Bits per character compares models with different tokenizers: a model's total negative
log-likelihood (nats) over a test set divided by the number of characters (Unicode code points)
of that test set, converted to bits. `unigram_bits_per_char` is the baseline any model must
beat.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Dataset, Sampler

from aigc.text.tokenizer import TextTokenizer


def encode_corpus(
    texts: Sequence[str], labels: Sequence[str], tokenizer: TextTokenizer
) -> torch.Tensor:
    """All documents as one 1-D LongTensor of `encode_document` sequences, in input order."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; pass one label per text")
    ids: list[int] = []
    for text, label in zip(texts, labels, strict=True):
        ids.extend(tokenizer.encode_document(text, label))
    return torch.tensor(ids, dtype=torch.long)


class BlockDataset(Dataset):
    """Fixed-length blocks of a token stream: item i is (x, y) with y = x shifted by one.

    Blocks start every `stride` tokens (default `block_size`: non-overlapping). The blocks are
    a pure function of the stream, so the dataset is deterministic; shuffling is the sampler's
    job (see `EpochShuffleSampler`). A leftover tail shorter than a block is dropped.
    """

    def __init__(self, tokens: torch.Tensor, block_size: int, stride: int | None = None) -> None:
        if tokens.dim() != 1:
            raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
        if block_size < 1:
            raise ValueError(f"block_size={block_size} must be at least 1")
        self.tokens = tokens.long()
        self.block_size = block_size
        self.stride = block_size if stride is None else stride
        if self.stride < 1:
            raise ValueError(f"stride={self.stride} must be at least 1")
        if len(self.tokens) < block_size + 1:
            raise ValueError(
                f"{len(self.tokens)} tokens cannot fill one block of {block_size} (+1 for the "
                "shifted target); use more documents or a smaller block_size"
            )

    def __len__(self) -> int:
        return (len(self.tokens) - 1 - self.block_size) // self.stride + 1

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"block {index} out of range for {len(self)} blocks")
        start = (index % len(self)) * self.stride
        chunk = self.tokens[start : start + self.block_size + 1]
        return chunk[:-1], chunk[1:]  # (T,), (T,)


class EpochShuffleSampler(Sampler[int]):
    """A shuffled order that depends only on (seed, epoch): resumable and reproducible.

    `set_epoch(e)` picks the permutation for epoch e, like DistributedSampler (which Ray's
    `prepare_data_loader` substitutes in a multi-worker run); the training loop calls it at
    the start of every epoch. Unlike `RandomSampler`, it never draws from the global RNG.
    """

    def __init__(self, length: int, seed: int = 0) -> None:
        self.length = length
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return iter(torch.randperm(self.length, generator=generator).tolist())

    def __len__(self) -> int:
        return self.length


def bits_per_character(total_nll_nats: float, total_chars: int) -> float:
    """Total negative log-likelihood in nats over a text → bits per character of that text."""
    if total_chars <= 0:
        raise ValueError(f"total_chars={total_chars} must be positive")
    return total_nll_nats / (total_chars * math.log(2))


def unigram_bits_per_char(
    train_texts: Sequence[str], test_texts: Sequence[str], smoothing: float = 1.0
) -> float:
    """Bits per character of `test_texts` under a unigram model of UTF-8 bytes fit on
    `train_texts` with add-`smoothing` (Laplace) counts over all 256 byte values.

    Bytes rather than characters: the alphabet is closed (no guess at how much mass unseen
    characters deserve) and it matches the byte-level tokenizer. The cost is still divided by
    the number of characters, so it compares directly with a model's `bits_per_character`.
    With `smoothing=0` a byte unseen in training makes the result infinite.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing={smoothing} must be non-negative")
    counts: Counter[int] = Counter()
    for text in train_texts:
        counts.update(text.encode("utf-8"))
    total = sum(counts.values()) + 256 * smoothing
    if total == 0:
        raise ValueError("train_texts are empty and smoothing is 0: no distribution to fit")
    test_counts: Counter[int] = Counter()
    chars = 0
    for text in test_texts:
        test_counts.update(text.encode("utf-8"))
        chars += len(text)
    bits = 0.0
    for byte, n in test_counts.items():
        probability = (counts[byte] + smoothing) / total
        if probability == 0:
            return math.inf
        bits -= n * math.log2(probability)
    if chars == 0:
        raise ValueError("test_texts are empty: bits per character is undefined")
    return bits / chars
