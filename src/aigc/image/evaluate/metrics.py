"""Sample-quality measures for image generators, in the feature space of a classifier.

    real, fake = classifier.features(test.pixels), classifier.features(samples)  # (N, D)
    frechet_distance(real, fake)                      # lower is better; 0 for identical sets
    kernel_inception_distance(real, fake, subsets=params.kid_subsets,
                              subset_size=params.kid_subset_size, seed=params.seed)
    precision_recall(real, fake, nearest_k=params.nearest_k)  # fidelity, variety: in [0, 1]
    density_coverage(real, fake, nearest_k=params.nearest_k)  # the same, robust to outliers
    conditional_accuracy(requested, predicted, classes)
    feature_spread_ratio(fake, requested, real, real_labels)
    frechet_difference(challenger, champion, real, samples=policy.bootstrap_samples,
                       confidence=policy.confidence, seed=policy.seed)

(`params`: the `image.evaluate` section; `policy`: `image.registry.policy`.)

Numpy and scipy only (no torch): the promotion gate imports this module. The features are
whatever `FeatureClassifier.features` gives; the names follow the Inception-based originals
(FID, KID) but the numbers are only comparable within one classifier, i.e. one data version.
Every measure depends on the number of samples, so callers use fixed counts.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

Function = TypeVar("Function", bound=Callable)


def _one_blas_thread(function: Function) -> Function:
    """Run on one BLAS thread: these matrices are small (D of 32, a few hundred rows), and on
    a busy machine OpenBLAS's threads mostly wait for each other (the gate's bootstrap took
    8 s with them, 0.5 s without)."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with threadpool_limits(limits=1, user_api="blas"):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, in float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need at least two (N, D) feature rows, got shape {features.shape}")
    return features.mean(axis=0), np.cov(features, rowvar=False, ddof=1)


@_one_blas_thread
def frechet_distance(first: np.ndarray, second: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two (N, D) feature sets:

        |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1^1/2 S2 S1^1/2)^1/2)

    With 180 real test images and D=32 the covariances are well estimated but may be
    singular (a dead feature, or fewer samples than dimensions). The usual form
    `sqrtm(S1 @ S2)` then returns complex noise and needs an epsilon on the diagonal; this
    symmetric eigen form needs none: both square roots are of symmetric positive
    semi-definite matrices, and eigenvalues that rounding pushes below zero are clipped to 0,
    which is their true value."""
    mean1, cov1 = gaussian_statistics(first)
    mean2, cov2 = gaussian_statistics(second)
    return float(_frechet(mean1, cov1, mean2, cov2))


def _frechet(mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray) -> float:
    return float(_frechet_batch(mean1[None], cov1[None], mean2[None], cov2[None])[0])


@_one_blas_thread
def kernel_inception_distance(
    real: np.ndarray, fake: np.ndarray, *, subsets: int, subset_size: int, seed: int
) -> tuple[float, float]:
    """Unbiased MMD² with the cubic polynomial kernel k(x, y) = (x·y / D + 1)^3, averaged
    over `subsets` random subsets of `subset_size` rows from each set (Bińkowski et al. 2018).

    Returns (mean, standard error). The error is the standard deviation over subsets, the
    usual KID error bar: the spread of one subset's estimate. The subsets overlap, so it is
    a conservative bound on the error of their mean. `subset_size` is capped at the smaller
    set. Unbiased: identical distributions give about 0, and a small negative value is
    possible."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least two rows on each side, got {len(real)}, {len(fake)}")
    dimension = real.shape[1]
    rng = np.random.default_rng(seed)
    estimates = np.empty(subsets)
    for index in range(subsets):
        x = real[rng.choice(len(real), size, replace=False)]  # (m, D)
        y = fake[rng.choice(len(fake), size, replace=False)]  # (m, D)
        kxx = (x @ x.T / dimension + 1) ** 3  # (m, m)
        kyy = (y @ y.T / dimension + 1) ** 3
        kxy = (x @ y.T / dimension + 1) ** 3
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (size * (size - 1))
        estimates[index] = within - 2 * kxy.mean()
    spread = float(estimates.std(ddof=1)) if subsets > 1 else math.nan
    return float(estimates.mean()), spread


@_one_blas_thread
def precision_recall(real: np.ndarray, fake: np.ndarray, *, nearest_k: int) -> dict:
    """Improved precision and recall (Kynkäänniemi et al. 2019).

    Each set's manifold is the union of balls around its points, each ball reaching the
    point's `nearest_k`-th nearest neighbour in the same set. Precision: the share of fake
    points inside the real manifold (are samples realistic?). Recall: the share of real points
    inside the fake manifold (is the real variety covered?). A generator that collapses to one
    image per class has high precision and low recall. Compare equal set sizes: the radii
    shrink as a set grows."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if min(len(real), len(fake)) <= nearest_k:
        raise ValueError(f"precision/recall needs more than nearest_k={nearest_k} rows per set")
    real_radii = _kth_neighbour_distance(real, nearest_k)  # (R,)
    fake_radii = _kth_neighbour_distance(fake, nearest_k)  # (F,)
    between = _distances(fake, real)  # (F, R)
    precision = (between <= real_radii[None, :]).any(axis=1).mean()
    recall = (between <= fake_radii[:, None]).any(axis=0).mean()
    return {"precision": float(precision), "recall": float(recall)}


@_one_blas_thread
def density_coverage(real: np.ndarray, fake: np.ndarray, *, nearest_k: int) -> dict:
    """Density and coverage (Naeem et al. 2020): precision and recall made robust to outliers.

    Both use only the balls around REAL points (radius: the `nearest_k`-th nearest real
    neighbour). Density: the mean number of real balls a sample falls in, divided by
    `nearest_k`; about 1 for samples distributed like the real data, above 1 where samples
    crowd into dense real regions. Coverage: the share of real points whose ball holds at
    least one sample, in [0, 1]. Improved recall draws balls around the samples instead, and a
    noisy sample's ball is large (its neighbours are far), so noise inflates recall; a noisy
    sample far from the real data falls in no real ball, so it adds nothing to coverage. Two
    independent draws of one distribution of equal size score coverage about 1 - 2^-k (0.875
    for k=3) and density about 1."""
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if len(real) <= nearest_k or len(fake) == 0:
        raise ValueError(
            f"density/coverage needs more than nearest_k={nearest_k} real rows and one sample"
        )
    real_radii = _kth_neighbour_distance(real, nearest_k)  # (R,)
    inside = _distances(fake, real) <= real_radii[None, :]  # (F, R): sample f in ball of r
    return {
        "density": float(inside.sum() / (nearest_k * len(fake))),
        "coverage": float(inside.any(axis=0).mean()),
    }


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T  # (A, B)
    return np.sqrt(np.clip(squared, 0, None))


def _kth_neighbour_distance(points: np.ndarray, k: int) -> np.ndarray:
    distances = _distances(points, points)  # (N, N), 0 on the diagonal
    return np.partition(distances, k, axis=1)[:, k]  # index 0 is the point itself


def conditional_accuracy(
    requested: np.ndarray, predicted: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """The classifier's accuracy on samples generated for each requested class: label control.
    Keys `conditional_accuracy` and `conditional_accuracy_<class>` (requested classes only)."""
    requested, predicted = np.asarray(requested), np.asarray(predicted)
    result = {"conditional_accuracy": float(np.mean(requested == predicted))}
    for index, name in enumerate(classes):
        chosen = requested == index
        if chosen.any():
            result[f"conditional_accuracy_{name}"] = float(np.mean(predicted[chosen] == index))
    return result


def feature_spread_ratio(
    fake: np.ndarray, requested: np.ndarray, real: np.ndarray, real_labels: np.ndarray
) -> float:
    """Within-class spread of the samples relative to real images, averaged over classes.

    A class's spread is the root mean squared distance of its features to their centroid
    (sqrt of the covariance trace); the ratio is fake / real per class, then the mean over
    classes present in both with at least two rows. About 1 for a generator with the real
    variety, near 0 for one that collapses; accuracy alone cannot tell those apart."""
    ratios = []
    for label in np.unique(requested):
        ours, theirs = fake[requested == label], real[real_labels == label]
        if len(ours) >= 2 and len(theirs) >= 2:
            ratios.append(_spread(ours) / max(_spread(theirs), 1e-12))
    return float(np.mean(ratios)) if ratios else math.nan


def _spread(features: np.ndarray) -> float:
    centered = features - features.mean(axis=0)
    return float(np.sqrt((centered**2).sum(axis=1).mean()))


@_one_blas_thread
def frechet_difference(
    challenger: np.ndarray,
    champion: np.ndarray,
    real: np.ndarray,
    *,
    samples: int,
    confidence: float,
    seed: int,
    requested: np.ndarray | None = None,
    real_labels: np.ndarray | None = None,
) -> dict[str, float | int | None]:
    """How much lower the challenger's Fréchet distance is than the champion's, with a
    bootstrap interval, so that a chance improvement is not promoted.

    `challenger` and `champion` are (G, D) features of samples generated for the same
    requests, row by row (the same requested class per row); `real` the (R, D) test features.
    Each resample draws G request rows and R real rows with replacement (within each class
    when `requested` and `real_labels` are given, keeping the class balance fixed) and uses
    the same rows for both models: paired, so the luck of the real test set is shared and
    cancels. Resampling with duplicates raises both distances by about the same amount; the
    difference is what is read.

    improvement = champion - challenger (positive: the challenger is better). Returns the
    keys of `registry.bootstrap.bootstrap_improvement`: samples, confidence, documents (the
    generated rows), observed_improvement, improvement_lower (the `1 - confidence` quantile:
    the one-sided lower bound), improvement_upper, probability_better."""
    challenger, champion = np.asarray(challenger, np.float64), np.asarray(champion, np.float64)
    real = np.asarray(real, np.float64)
    if challenger.shape != champion.shape:
        raise ValueError(
            f"challenger features {challenger.shape} and champion features {champion.shape} "
            "differ: generate the same requests for both"
        )
    observed = frechet_distance(champion, real) - frechet_distance(challenger, real)
    rng = np.random.default_rng(seed)
    gains = []
    for start in range(0, samples, _BOOTSTRAP_CHUNK):
        size = min(_BOOTSTRAP_CHUNK, samples - start)
        rows = _resample_counts(rng, size, len(challenger), requested)  # (B, G)
        reference = _weighted_statistics(real, _resample_counts(rng, size, len(real), real_labels))
        new = _frechet_batch(*_weighted_statistics(challenger, rows), *reference)  # (B,)
        old = _frechet_batch(*_weighted_statistics(champion, rows), *reference)
        gains.append(old - new)
    gains = np.concatenate(gains)
    return {
        "samples": samples,
        "confidence": confidence,
        "documents": len(challenger),
        "observed_improvement": float(observed),
        "improvement_lower": float(np.quantile(gains, 1.0 - confidence)),
        "improvement_upper": float(np.quantile(gains, confidence)),
        "probability_better": float(np.mean(gains > 0)),
    }


# Resamples per vectorized chunk: the (B, D, D) second moments stay small for D up to ~256.
_BOOTSTRAP_CHUNK = 50


def _resample_counts(
    rng: np.random.Generator, samples: int, count: int, strata: np.ndarray | None
) -> np.ndarray:
    """(samples, count) float64: how often each row is drawn in each resample, `count` rows
    with replacement (within each stratum, keeping its size, when `strata` is given)."""
    groups = (
        [np.arange(count)]
        if strata is None
        else [np.flatnonzero(np.asarray(strata) == value) for value in np.unique(strata)]
    )
    picks = np.hstack([rng.choice(group, size=(samples, len(group))) for group in groups])
    offsets = np.arange(samples)[:, None] * count  # (B, 1): row b counts into b*count...
    counts = np.bincount((picks + offsets).ravel(), minlength=samples * count)
    return counts.reshape(samples, count).astype(np.float64)


def _weighted_statistics(
    features: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Means (B, D) and unbiased covariances (B, D, D) of each resample given by counts."""
    total = counts.sum(axis=1)[:, None]  # (B, 1)
    means = counts @ features / total  # (B, D)
    outer = np.einsum("nd,ne->nde", features, features).reshape(len(features), -1)  # (N, D*D)
    second = (counts @ outer / total).reshape(len(counts), *features.shape[1:] * 2)
    covariances = second - np.einsum("bd,be->bde", means, means)
    return means, covariances * (total / (total - 1))[:, :, None]


def _frechet_batch(
    mean1: np.ndarray, cov1: np.ndarray, mean2: np.ndarray, cov2: np.ndarray
) -> np.ndarray:
    """The Fréchet distance of `frechet_distance` for a stack of Gaussians: means (B, D) and
    covariances (B, D, D) on each side -> (B,). Rounding can give -1e-12 for identical
    Gaussians: clipped to 0."""
    values, vectors = np.linalg.eigh((cov1 + cov1.transpose(0, 2, 1)) / 2)
    root1 = (vectors * np.sqrt(np.clip(values, 0, None))[:, None, :]) @ vectors.transpose(0, 2, 1)
    middle = root1 @ cov2 @ root1
    middle = (middle + middle.transpose(0, 2, 1)) / 2
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(middle), 0, None)).sum(axis=1)
    traces = np.trace(cov1, axis1=1, axis2=2) + np.trace(cov2, axis1=1, axis2=2)
    return np.maximum(((mean1 - mean2) ** 2).sum(axis=1) + traces - 2 * cross, 0.0)
