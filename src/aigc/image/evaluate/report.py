"""The evaluation of an image generator's samples, with the reference points that make its
numbers readable.

    evaluation = evaluate_image_generator(generate, classifier, train, test, params)
    evaluation.metrics["frechet_distance"]; evaluation.per_sample   # the gate's rows

    # or in parts:
    requested = requested_labels(len(test.classes), params.samples_per_class)   # (G,)
    samples = generate(requested, params.seed)                                  # uint8 (G,H,W,C)
    evaluation = evaluate_image_samples(classifier, samples, requested, test, params)
    references = reference_metrics(classifier, train, test, params)  # floor_*, trivial_*

Every measure is computed in the features of `FeatureClassifier` (aigc.text.evaluate.
image_classifier) against the whole test split, from a fixed number of samples per class:

    frechet_distance, kid, kid_standard_error   distribution distance (lower is better)
    precision, recall                           fidelity and variety (Kynkäänniemi et al.)
    density, coverage                           the same, robust to noisy samples (Naeem et al.)
    conditional_accuracy[_<class>]              label control: the class asked for is seen
    feature_spread_ratio                        within-class variety relative to real images

Two reference points on the same features and counts: the floor (`floor_*`: real train
images posing as samples, what a perfect generator would score; the real data's own value of
figures that are not "more is better", such as `floor_feature_spread_ratio`) and the ceiling
(`trivial_*`: each class's mean image plus noise, a generator that knows the labels and
nothing else).
Pure numpy and pandas; the classifier is only called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from aigc.config import ImageEvaluateParams
from aigc.image.evaluate.metrics import (
    conditional_accuracy,
    density_coverage,
    feature_spread_ratio,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)

if TYPE_CHECKING:
    from aigc.image.evaluate.classifier import FeatureClassifier, Images

FEATURE_PREFIX = "feature_"
# The figures shown wherever an image model is summarized (CLI, registry tags, README table).
IMAGE_HEADLINE_METRICS = (
    "frechet_distance",
    "kid",
    "precision",
    "recall",
    "density",
    "coverage",
    "floor_coverage",
    "conditional_accuracy",
    "feature_spread_ratio",
    "floor_frechet_distance",
    "trivial_frechet_distance",
    "classifier_test_accuracy",
    "test_bits_per_dim",  # the VAE (a likelihood); absent for the others
)


@dataclass(frozen=True)
class ImageEvaluation:
    """Flat metrics, and per-sample rows for the gate: one per generated sample (`set`
    "generated", the requested class in `label`) and one per real test image (`set` "real"),
    each with its predicted class and its features (columns feature_00, feature_01, ...)."""

    metrics: dict[str, float]
    per_sample: pd.DataFrame


def requested_labels(classes: int, per_class: int) -> np.ndarray:
    """(classes * per_class,) int64: each class index `per_class` times, class by class."""
    return np.repeat(np.arange(classes, dtype=np.int64), per_class)


def evaluate_image_generator(
    generate: Callable[[np.ndarray, int], np.ndarray],
    classifier: FeatureClassifier,
    train: Images,
    test: Images,
    params: ImageEvaluateParams,
    *,
    test_ids: list[str] | None = None,
) -> ImageEvaluation:
    """Ask `generate(requested, seed)` for samples_per_class uint8 images of every class, score
    them, and add the references and the classifier's figures to the metrics."""
    requested = requested_labels(len(test.classes), params.samples_per_class)
    samples = generate(requested, params.seed)
    evaluation = evaluate_image_samples(
        classifier, samples, requested, test, params, test_ids=test_ids
    )
    evaluation.metrics.update(reference_metrics(classifier, train, test, params))
    evaluation.metrics.update(classifier.describe())
    return evaluation


def evaluate_image_samples(
    classifier: FeatureClassifier,
    samples: np.ndarray,
    requested: np.ndarray,
    test: Images,
    params: ImageEvaluateParams,
    *,
    test_ids: list[str] | None = None,
) -> ImageEvaluation:
    """Score `samples` (uint8 (G, H, W, C), generated for the classes `requested` (G,)) against
    the test split. `test_ids` name the real rows (default test-00000, ... in split order)."""
    if len(samples) != len(requested):
        raise ValueError(f"{len(samples)} samples for {len(requested)} requested labels")
    real = classifier.features(test.pixels)  # (R, D)
    real_predicted = classifier.predict(test.pixels)
    fake = classifier.features(samples)  # (G, D)
    predicted = classifier.predict(samples)
    metrics = _measures(real, np.asarray(test.labels), fake, requested, predicted, test, params)
    classes = np.asarray(test.classes)
    generated = _rows(
        [f"sample-{index:05d}" for index in range(len(samples))],
        "generated",
        classes[requested],
        classes[predicted],
        fake,
    )
    ids = test_ids or [f"test-{index:05d}" for index in range(len(real))]
    reals = _rows(ids, "real", classes[test.labels], classes[real_predicted], real)
    return ImageEvaluation(metrics, pd.concat([generated, reals], ignore_index=True))


def reference_metrics(
    classifier: FeatureClassifier, train: Images, test: Images, params: ImageEvaluateParams
) -> dict[str, float]:
    """The floor (`floor_*`: up to samples_per_class real train images per class) and the
    ceiling (`trivial_*`: `trivial_samples`), scored as `evaluate_image_samples` scores a
    generator's samples."""
    real = classifier.features(test.pixels)
    real_labels = np.asarray(test.labels)
    rng = np.random.default_rng(params.seed)
    picks = np.concatenate(
        [
            rng.permutation(np.flatnonzero(train.labels == label))[: params.samples_per_class]
            for label in range(len(train.classes))
        ]
    )  # (G,) train rows, class by class
    references = {"floor": train.pixels[picks]}
    floor_labels = np.asarray(train.labels)[picks]
    requested = requested_labels(len(train.classes), params.samples_per_class)
    references["trivial"] = trivial_samples(train, requested, params.trivial_noise, params.seed)
    metrics = {}
    for name, labels in (("floor", floor_labels), ("trivial", requested)):
        pixels = references[name]
        figures = _measures(
            real,
            real_labels,
            classifier.features(pixels),
            labels,
            classifier.predict(pixels),
            test,
            params,
        )
        metrics |= {f"{name}_{key}": value for key, value in figures.items()}
    return metrics


def trivial_samples(train: Images, requested: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """The ceiling generator: for each requested class, the mean train image of that class
    plus Gaussian noise of standard deviation `noise` (a fraction of the pixel range), as uint8
    (G, H, W, C). It follows labels and has some variety, but no real shape variation."""
    pixels = np.asarray(train.pixels, np.float64)
    means = np.stack(
        [pixels[train.labels == label].mean(axis=0) for label in range(len(train.classes))]
    )  # (classes, H, W, C)
    rng = np.random.default_rng(seed)
    noisy = means[requested] + rng.normal(0, noise * 255, size=(len(requested), *means.shape[1:]))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _measures(
    real: np.ndarray,
    real_labels: np.ndarray,
    fake: np.ndarray,
    requested: np.ndarray,
    predicted: np.ndarray,
    test: Images,
    params: ImageEvaluateParams,
) -> dict[str, float]:
    kid, kid_error = kernel_inception_distance(
        real,
        fake,
        subsets=params.kid_subsets,
        subset_size=params.kid_subset_size,
        seed=params.seed,
    )
    # Precision, recall, density and coverage compare sets of equal size (a ball's radius
    # shrinks as its set grows): a fixed subset of the samples, as many as there are test
    # images.
    rng = np.random.default_rng(params.seed)
    subset = np.sort(rng.permutation(len(fake))[: len(real)])
    return {
        "frechet_distance": frechet_distance(fake, real),
        "kid": kid,
        "kid_standard_error": kid_error,
        **precision_recall(real, fake[subset], nearest_k=params.nearest_k),
        **density_coverage(real, fake[subset], nearest_k=params.nearest_k),
        **conditional_accuracy(requested, predicted, test.classes),
        "feature_spread_ratio": feature_spread_ratio(fake, requested, real, real_labels),
        "samples": float(len(fake)),
        "test_images": float(len(real)),
    }


def _rows(
    ids: list[str], kind: str, labels: np.ndarray, predicted: np.ndarray, features: np.ndarray
) -> pd.DataFrame:
    columns = {
        f"{FEATURE_PREFIX}{index:02d}": features[:, index] for index in range(features.shape[1])
    }
    frame = pd.DataFrame({"id": ids, "set": kind, "label": labels, "predicted": predicted})
    frame["correct"] = (frame["label"] == frame["predicted"]).astype(float)
    return pd.concat([frame, pd.DataFrame(columns)], axis=1)


def split_per_sample(
    frame: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The generated rows and the real rows of `ImageEvaluation.per_sample`, each sorted by
    id: the gate pairs a challenger's rows with the champion's by id."""
    if "set" not in frame.columns:
        raise ValueError("per_sample lacks the column 'set' (generated or real)")
    generated = frame[frame["set"] == "generated"].sort_values("id", ignore_index=True)
    real = frame[frame["set"] == "real"].sort_values("id", ignore_index=True)
    return generated, real


def feature_matrix(rows: pd.DataFrame) -> np.ndarray:
    """(N, D) float64 from the feature_* columns of per-sample rows."""
    columns = [column for column in rows.columns if str(column).startswith(FEATURE_PREFIX)]
    if not columns:
        raise ValueError("per_sample rows have no feature_* columns")
    return rows[columns].to_numpy(np.float64)
