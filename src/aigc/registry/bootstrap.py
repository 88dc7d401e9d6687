"""The promotion gate's paired bootstrap: does an improvement hold beyond chance?

`aigc.registry.decide`'s `bootstrap` check calls `bootstrap_improvement`; it is pure (numpy
and pandas, no I/O) and the same inputs give the same figures.

Documents (rows of `per_document`, matched by `id`) are resampled with
replacement `bootstrap_samples` times; each resample takes the same documents for both models
(paired), so the spread measures how much the verdict depends on which documents happen to be
in the test split, and the documents' own difficulty cancels out. On each resample the primary
metric is recomputed the way the evaluation computes it over a corpus:

    test_bits_per_character  sum(nll_nats) / ln 2 / sum(chars)   (a ratio, not a mean of ratios)
    test_perplexity          exp(sum(nll_nats) / sum(tokens))
    any per-document column  its mean over documents scored on both sides (e.g. bleu, chrf,
                             rougeL: sentence scores, so the mean, not corpus BLEU)

`improvement` = champion - challenger when minimizing (challenger - champion when maximizing);
the check passes when its `(1 - confidence)` quantile, the one-sided lower bound, is above 0.
Resampling is a (B, N) matrix of counts times the per-document columns, drawn from
`np.random.default_rng(seed)`: the same inputs give the same decision. Documents are sorted by
id first, so the row order of `per_document` does not matter. Scorecards whose document ids
differ raise ValueError; `bootstrap_samples=0` skips the check.

Images (`primary_metric: frechet_distance`, `ImagePromotionPolicy`): a Fréchet distance is a
statistic of whole sets, not a sum over rows, so `per_document` holds the per-sample rows of
`aigc.image.evaluate.report.ImageEvaluation` (generated samples matched by id, i.e. by
request, plus the real test images with their features) and the bootstrap is
`aigc.image.evaluate.metrics.frechet_difference`: samples and test images resampled within
each class, the same rows for both models, the distance recomputed on every resample.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from aigc.config import Direction

# The image gate's primary metric: its bootstrap resamples sample and test sets, not documents.
FRECHET_DISTANCE = "frechet_distance"

# Counts entries per resampling chunk: bounds memory at ~16 MB however many documents there are.
_CHUNK_ENTRIES = 2_000_000


class NoDocuments(ValueError):
    """No document is usable for the bootstrap (e.g. no document has a bleu on both sides)."""


def bootstrap_improvement(
    challenger: pd.DataFrame,
    champion: pd.DataFrame,
    *,
    metric: str,
    direction: Direction,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, float | int | None]:
    """Paired bootstrap of the improvement in `metric` over documents matched by `id`.

    Returns samples, confidence, documents, observed_improvement, improvement_lower (the
    `1 - confidence` quantile), improvement_upper (the `confidence` quantile) and
    probability_better (the share of resamples where the challenger is better)."""
    if samples < 1:
        raise ValueError(f"samples={samples} must be at least 1")
    if metric == FRECHET_DISTANCE:
        return _frechet_bootstrap(challenger, champion, direction, samples, confidence, seed)
    columns, statistic = _recipe(metric, challenger, champion)
    ids, new, old = _aligned(challenger, champion, columns)
    unscored = np.isnan(new).any(axis=1) | np.isnan(old).any(axis=1)
    if len(columns) == 1:  # a per-document score: only documents scored on both sides count
        new, old = new[~unscored], old[~unscored]
    elif unscored.any():  # a corpus sum: one NaN would poison every resample
        raise ValueError(
            f"per_document has NaN in {columns} for ids {_some(ids[unscored])}; "
            "every test document must have a likelihood"
        )
    documents = len(new)
    if documents == 0:
        raise NoDocuments(f"no document has a {metric} score for both models")
    values = np.hstack([new, old])  # (N, 2k): the challenger's columns, then the champion's
    width = len(columns)

    def improvement(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        gain = statistic(sums[:, width:], counts) - statistic(sums[:, :width], counts)
        return gain if direction == "minimize" else -gain

    observed = improvement(values.sum(axis=0, keepdims=True), np.array([float(documents)]))
    rng = np.random.default_rng(seed)
    rows = max(1, min(samples, _CHUNK_ENTRIES // documents))
    gains = []
    for start in range(0, samples, rows):
        size = min(rows, samples - start)
        picks = rng.integers(0, documents, size=(size, documents))  # (B, N) document indices
        offsets = np.arange(size)[:, None] * documents
        counts = np.bincount((picks + offsets).ravel(), minlength=size * documents)
        counts = counts.reshape(size, documents).astype(np.float64)  # (B, N) times drawn
        gains.append(improvement(counts @ values, np.full(size, float(documents))))
    gain = np.concatenate(gains)
    return {
        "samples": samples,
        "confidence": confidence,
        "documents": documents,
        "observed_improvement": _finite(observed[0]),
        "improvement_lower": _finite(np.quantile(gain, 1.0 - confidence)),
        "improvement_upper": _finite(np.quantile(gain, confidence)),
        "probability_better": float(np.mean(gain > 0)),
    }


def _frechet_bootstrap(
    challenger: pd.DataFrame,
    champion: pd.DataFrame,
    direction: Direction,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, float | int | None]:
    """The image gate: per-sample rows of `ImageEvaluation.per_sample` (generated samples
    paired by id, i.e. by request; the real test images, the same on both sides)."""
    # Imported here: the aigc.text.evaluate package brings torch, which the text gate never needs.
    from aigc.image.evaluate.metrics import frechet_difference
    from aigc.image.evaluate.report import feature_matrix, split_per_sample

    if direction != "minimize":
        raise ValueError(f"{FRECHET_DISTANCE} is a distance: the policy must minimize it")
    new_generated, new_real = split_per_sample(challenger)
    old_generated, old_real = split_per_sample(champion)
    for what, new, old in (
        ("sample", new_generated, old_generated),
        ("test image", new_real, old_real),
    ):
        if new["id"].tolist() != old["id"].tolist():
            raise ValueError(
                f"the challenger and the champion were scored on different {what} ids; "
                "re-evaluate the champion with the challenger's requests and test split"
            )
    real = feature_matrix(new_real)
    if real.shape != feature_matrix(old_real).shape or not np.allclose(
        real, feature_matrix(old_real), atol=1e-6
    ):
        raise ValueError(
            "the test images have different features in the two evaluations: evaluate the "
            "challenger and the champion with the same feature classifier (one per data version)"
        )
    if new_generated.empty:
        raise NoDocuments("no generated samples in the per-sample rows")
    return frechet_difference(
        feature_matrix(new_generated),
        feature_matrix(old_generated),
        real,
        samples=samples,
        confidence=confidence,
        seed=seed,
        requested=new_generated["label"].to_numpy(),
        real_labels=new_real["label"].to_numpy(),
    )


Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _recipe(
    metric: str, challenger: pd.DataFrame, champion: pd.DataFrame
) -> tuple[list[str], Statistic]:
    """The per-document columns a resample sums, and the metric from those (B, k) sums."""
    if metric == "test_bits_per_character":
        return ["nll_nats", "chars"], lambda sums, _: sums[:, 0] / sums[:, 1] / math.log(2)
    if metric == "test_perplexity":
        return ["nll_nats", "tokens"], lambda sums, _: np.exp(sums[:, 0] / sums[:, 1])
    if metric != "id" and metric in challenger.columns and metric in champion.columns:
        return [metric], lambda sums, counts: sums[:, 0] / counts
    raise ValueError(
        f"the bootstrap cannot recompute the primary metric {metric!r} from per-document rows: "
        "it knows test_bits_per_character, test_perplexity and per-document columns present "
        f"on both sides (challenger has {sorted(map(str, challenger.columns))}); choose one of "
        "those, or set bootstrap_samples: 0"
    )


def _aligned(
    challenger: pd.DataFrame, champion: pd.DataFrame, columns: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted ids (N,), and both sides' `columns` as (N, k) float arrays in that order."""
    for side, frame in (("challenger", challenger), ("champion", champion)):
        lacking = [column for column in ["id", *columns] if column not in frame.columns]
        if lacking:
            raise ValueError(f"the {side}'s per_document lacks columns {lacking}")
        duplicated = frame["id"][frame["id"].duplicated()].unique().tolist()
        if duplicated:
            raise ValueError(
                f"the {side}'s per_document repeats document ids {_some(duplicated)}; "
                "each test document must be scored once"
            )
    new_ids, old_ids = set(challenger["id"]), set(champion["id"])
    if new_ids != old_ids:
        raise ValueError(
            "the challenger and the champion were scored on different documents: "
            f"{len(new_ids - old_ids)} ids only in the challenger's per_document "
            f"{_some(new_ids - old_ids)}, {len(old_ids - new_ids)} only in the champion's "
            f"{_some(old_ids - new_ids)}; re-evaluate the champion on the challenger's test split"
        )
    new = challenger.set_index("id")[columns].sort_index()
    old = champion.set_index("id")[columns].reindex(new.index)
    return new.index.to_numpy(), new.to_numpy(np.float64), old.to_numpy(np.float64)


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _some(ids: Any, limit: int = 5) -> str:
    ordered = sorted(map(str, ids))
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return f"{ordered[:limit]}{more}"
