"""Continuation: give the model the start of a held-out document, compare what it writes next.

    rows = score_continuations(generator, ids, texts, labels, params.evaluate)
    # one row per document: id, label, prompt, reference, hypothesis, bleu, chrf, rougeL
    summarize_continuations(rows)   # corpus BLEU and chrF, mean ROUGE-L F1

Each document is cut at a whitespace near `prompt_fraction` of its characters (`split_prompt`);
the model is prompted with `<eos> <label> prompt` and asked for about as many tokens as the
true continuation has (capped at `max_new_tokens`), sampled at the section's `temperature`
and `top_k`; then the generated text (the hypothesis) is scored against the
true continuation (the reference) with sacrebleu's BLEU and chrF and with ROUGE-L F1
(`score_pair`, usable without a model).

Every document is sampled with its own seed, `derived_seed(seed, "continuation", id)`, so a
document gets the same text whichever shard it is in and whatever else is in the batch: shards
merge by concatenating rows. Corpus BLEU/chrF are not means of sentence scores (they pool
n-gram counts), which is why `summarize_continuations` recomputes them from the texts kept in
the rows; the per-document sentence scores are what a bootstrap resamples.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
import sacrebleu

if TYPE_CHECKING:
    from aigc.config import EvaluateParams
    from aigc.text.generator import TextGenerator

CONTINUATION_COLUMNS = [
    "id",
    "label",
    "prompt",
    "reference",
    "hypothesis",
    "bleu",
    "chrf",
    "rougeL",
]


def derived_seed(seed: int, *parts: str) -> int:
    """A seed for one unit of work (a document, a label), fixed by `seed` and its name alone.

    Stable across processes and Python versions (sha256, not `hash`), so a unit sampled on
    any Ray worker gets the same text as in a single-process run."""
    digest = hashlib.sha256("\x1f".join([str(seed), *parts]).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % (2**63)


def split_prompt(text: str, prompt_fraction: float) -> tuple[str, str]:
    """(prompt, continuation) with `prompt + continuation == text`.

    The cut is the last whitespace at or before `prompt_fraction` of the characters (else the
    first one after it), and the whitespace goes to the continuation: the byte-level tokenizer
    attaches a space to the word after it, as in training. A text without inner whitespace is
    cut at the character position itself."""
    if not 0 < prompt_fraction < 1:
        raise ValueError(f"prompt_fraction={prompt_fraction} must be strictly between 0 and 1")
    if len(text) < 2:
        return text, ""
    target = min(max(int(len(text) * prompt_fraction), 1), len(text) - 1)
    spaces = [position for position in range(1, len(text)) if text[position].isspace()]
    before = [position for position in spaces if position <= target]
    after = [position for position in spaces if position > target]
    cut = before[-1] if before else after[0] if after else target
    return text[:cut], text[cut:]


@functools.cache
def _rouge_scorer() -> Any:
    # Imported on first use: rouge_score pulls in nltk, a second and a half of import time.
    # Only the tokenizer and the LCS are used (no stemmer), so nltk never needs its data files.
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def score_pair(hypothesis: str, reference: str) -> dict[str, float]:
    """Sentence BLEU and chrF (sacrebleu, 0–100) and ROUGE-L F1 (0–1) of one hypothesis.

    Both texts are stripped of surrounding whitespace first. An empty hypothesis or reference
    scores 0 on all three."""
    hypothesis, reference = hypothesis.strip(), reference.strip()
    return {
        "bleu": float(sacrebleu.sentence_bleu(hypothesis, [reference]).score),
        "chrf": float(sacrebleu.sentence_chrf(hypothesis, [reference]).score),
        "rougeL": float(_rouge_scorer().score(reference, hypothesis)["rougeL"].fmeasure),
    }


def score_continuations(
    generator: TextGenerator,
    ids: Sequence[str],
    texts: Sequence[str],
    labels: Sequence[str],
    settings: EvaluateParams,
) -> pd.DataFrame:
    """One row per document: its prompt, true continuation, generated continuation, scores.

    The model may write up to as many tokens as the true continuation has, at most
    `settings.max_new_tokens`; it may stop earlier by writing `<eos>`."""
    if not len(ids) == len(texts) == len(labels):
        raise ValueError(
            f"{len(ids)} ids, {len(texts)} texts and {len(labels)} labels; pass one of each "
            "per document"
        )
    rows = []
    for identifier, text, label in zip(ids, texts, labels, strict=True):
        prompt, reference = split_prompt(text, settings.prompt_fraction)
        needed = max(len(generator.tokenizer.encode(reference)), 1)
        (hypothesis,) = generator.generate(
            [prompt],
            [label],
            max_new_tokens=min(needed, settings.max_new_tokens),
            temperature=settings.temperature,
            top_k=settings.top_k,
            seed=derived_seed(settings.seed, "continuation", identifier),
        )
        rows.append(
            {
                "id": identifier,
                "label": label,
                "prompt": prompt,
                "reference": reference,
                "hypothesis": hypothesis,
                **score_pair(hypothesis, reference),
            }
        )
    return pd.DataFrame(rows, columns=CONTINUATION_COLUMNS)


def summarize_continuations(rows: pd.DataFrame) -> dict[str, float]:
    """Corpus BLEU and chrF over all rows' texts, mean ROUGE-L F1 and mean sentence scores."""
    missing = [column for column in CONTINUATION_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(
            f"continuation rows lack {missing}; pass the frame of score_continuations"
        )
    if rows.empty:
        raise ValueError("no continuations to summarize; ask for at least one document")
    hypotheses = [text.strip() for text in rows["hypothesis"]]
    references = [[text.strip() for text in rows["reference"]]]
    return {
        "bleu": float(sacrebleu.corpus_bleu(hypotheses, references).score),
        "chrf": float(sacrebleu.corpus_chrf(hypotheses, references).score),
        "rougeL": float(rows["rougeL"].mean()),
        "sentence_bleu": float(rows["bleu"].mean()),
        "sentence_chrf": float(rows["chrf"].mean()),
        "documents": float(len(rows)),
    }
