"""Likelihood of held-out documents under a generator: per-document nats, then bits per character.

    per_document = document_nll(generator, texts, labels, params.evaluate.batch_size)
    # one row per document: nll_nats, tokens, chars
    summarize_lm(per_document)
    # {"bits_per_character": ..., "perplexity": ..., "tokens": ..., "chars": ..., "documents": ...}

What is scored. A document is scored the way it was seen in training, as
`<eos> <label> text… <eos>`: every token of the text and the closing `<eos>` is predicted from
its real left context, starting at `<eos> <label>`. The label token itself is given, not
predicted (this is p(text | label), the quantity a conditional generator is asked for), so
`tokens` is `len(encode(text)) + 1`. `chars` is the number of Unicode code points of the text.

Documents longer than the model's context. When `<eos> <label> text <eos>` needs more than
`config.block_size` positions, it is scored with a sliding window of `block_size` tokens that
moves by `stride = block_size // 2`: the first window scores every token it holds, each later
window scores only the tokens past the end of the previous one, and the last window is pulled
back to end exactly at the final `<eos>`. Every token is thus scored exactly once, and every
token after the first window sees at least `block_size - stride` tokens of context (half a
block), which costs about twice the compute of non-overlapping blocks but avoids the large
penalty a token pays for being scored right after a cut.

Everything is a sum over documents, so shards scored on different workers merge by
concatenating their rows (`pd.concat`) before `summarize_lm`. Bits per character is total nats /
ln 2 / total characters, comparable across tokenizers; perplexity is per token of this model's
tokenizer, `exp(total nats / total tokens)`, and is only comparable between models that share
a tokenizer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from aigc.models.base import IGNORE_INDEX, unwrap_model
from aigc.text.dataset import bits_per_character

if TYPE_CHECKING:
    from aigc.text.generator import TextGenerator

LM_COLUMNS = ["nll_nats", "tokens", "chars"]


def scoring_windows(sequence: Sequence[int], block_size: int) -> list[tuple[list[int], list[int]]]:
    """The (inputs, targets) windows that score `sequence` = `[eos, label, *text, eos]`.

    `targets[k]` is the token that follows `inputs[k]`, or IGNORE_INDEX where that token is
    not scored in this window (the label token, and tokens an earlier window scored). Inputs
    hold at most `block_size` tokens; see the module docstring for the stride."""
    if block_size < 1:
        raise ValueError(f"block_size={block_size} must be at least 1")
    if len(sequence) < 3:
        raise ValueError(f"a scored sequence is <eos> <label> ... <eos>, got {list(sequence)}")
    stride = max(1, block_size // 2)
    last = len(sequence) - 1  # position of the final <eos>, the last target
    scored_until = 1  # targets at positions <= this are done; position 1 is the label: given
    start = 0
    windows = []
    while scored_until < last:
        start = min(start, max(0, last - block_size))
        end = min(start + block_size, last)  # inputs [start, end) predict targets [start+1, end]
        inputs = list(sequence[start:end])
        targets = [
            token if start + 1 + offset > scored_until else IGNORE_INDEX
            for offset, token in enumerate(sequence[start + 1 : end + 1])
        ]
        if any(target != IGNORE_INDEX for target in targets):
            windows.append((inputs, targets))
        scored_until = end
        start += stride
    return windows


def document_nll(
    generator: TextGenerator,
    texts: Sequence[str],
    labels: Sequence[str],
    batch_size: int,
) -> pd.DataFrame:
    """Per document (in input order): total negative log-likelihood in nats of its text tokens
    and closing `<eos>` given `<eos> <label>`, the number of those tokens, and its characters.

    Windows from all documents are batched together, `batch_size` windows at a time, padded on
    the right (harmless: the models are causal, and padded targets are not scored)."""
    if len(texts) != len(labels):
        raise ValueError(f"{len(texts)} texts but {len(labels)} labels; pass one label per text")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be at least 1")
    tokenizer = generator.tokenizer
    unknown = sorted(set(labels) - set(tokenizer.labels))
    if unknown:
        raise ValueError(
            f"labels {unknown} are not known to this model (it knows {list(tokenizer.labels)}); "
            "evaluate on a data version with the model's labels, or retrain the model"
        )
    model = generator.model
    block_size = unwrap_model(model).config.block_size

    windows: list[tuple[int, list[int], list[int]]] = []
    tokens = np.zeros(len(texts), dtype=np.int64)
    for document, (text, label) in enumerate(zip(texts, labels, strict=True)):
        sequence = [tokenizer.eos_id, *tokenizer.encode_document(text, label)]
        tokens[document] = len(sequence) - 2
        windows.extend((document, x, y) for x, y in scoring_windows(sequence, block_size))
    # Longest first, so a batch pads little; `sorted` is stable, so the order is reproducible.
    windows = sorted(windows, key=lambda window: -len(window[1]))

    nll = torch.zeros(len(texts), dtype=torch.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for first in range(0, len(windows), batch_size):
                batch = windows[first : first + batch_size]
                inputs = [window_inputs for _, window_inputs, _ in batch]
                targets = [window_targets for _, _, window_targets in batch]
                batch_nll = _batch_nll(model, inputs, targets, tokenizer.pad_id, generator.device)
                nll.index_add_(0, torch.tensor([document for document, _, _ in batch]), batch_nll)
    finally:
        model.train(was_training)
    return pd.DataFrame(
        {
            "nll_nats": nll.numpy(),
            "tokens": tokens,
            "chars": np.array([len(text) for text in texts], dtype=np.int64),
        }
    )


def _batch_nll(
    model: torch.nn.Module,
    inputs: list[list[int]],
    targets: list[list[int]],
    pad_id: int,
    device: torch.device,
) -> torch.Tensor:
    """Summed nats of the scored targets of each window: (B,) float64 on the CPU."""
    length = max(len(row) for row in inputs)
    x = torch.full((len(inputs), length), pad_id, dtype=torch.long)  # (B, T)
    y = torch.full((len(inputs), length), IGNORE_INDEX, dtype=torch.long)  # (B, T)
    for row, (window_inputs, window_targets) in enumerate(zip(inputs, targets, strict=True)):
        x[row, : len(window_inputs)] = torch.tensor(window_inputs)
        y[row, : len(window_targets)] = torch.tensor(window_targets)
    x, y = x.to(device), y.to(device)
    logits, _ = model(x)  # (B, T, V)
    log_probs = F.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    scored = y != IGNORE_INDEX  # (B, T)
    picked = log_probs.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)  # (B, T)
    return -(picked.double() * scored).sum(dim=1).cpu()  # (B,)


def summarize_lm(per_document: pd.DataFrame) -> dict[str, float]:
    """Corpus figures from per-document rows (one shard's, or several shards' concatenated)."""
    missing = [column for column in LM_COLUMNS if column not in per_document.columns]
    if missing:
        raise ValueError(f"per-document rows lack {missing}; pass the frame of document_nll")
    if per_document.empty:
        raise ValueError("no documents were scored; the test split is empty")
    total_nll = float(per_document["nll_nats"].sum())
    tokens = int(per_document["tokens"].sum())
    chars = int(per_document["chars"].sum())
    return {
        "bits_per_character": bits_per_character(total_nll, chars),
        "perplexity": math.exp(total_nll / tokens),
        "tokens": float(tokens),
        "chars": float(chars),
        "documents": float(len(per_document)),
    }
