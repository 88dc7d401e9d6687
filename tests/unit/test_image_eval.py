"""aigc.text.evaluate.image_*: the feature classifier, the sample measures, the references, the
image gate's bootstrap and the sample grid, on scikit-learn's 8×8 digits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import scipy.linalg
from PIL import Image

from aigc.config import (
    GuardRule,
    ImageClassifierParams,
    ImageEvaluateParams,
    ImagePromotionPolicy,
)
from aigc.image.evaluate.classifier import (
    cached_feature_classifier,
    fit_feature_classifier,
    load_feature_classifier,
)
from aigc.image.evaluate.grid import write_sample_grid
from aigc.image.evaluate.metrics import (
    density_coverage,
    frechet_distance,
    kernel_inception_distance,
    precision_recall,
)
from aigc.image.evaluate.report import (
    evaluate_image_generator,
    evaluate_image_samples,
    reference_metrics,
    requested_labels,
    trivial_samples,
)
from aigc.registry.decide import Scorecard, decide
from aigc.train.plots import write_loss_curves

PARAMS = ImageEvaluateParams(samples_per_class=60, kid_subsets=20)


@dataclass(frozen=True)
class Split:
    """The ImageSplit shape (aigc.image.dataset) without depending on the data side."""

    pixels: np.ndarray
    labels: np.ndarray
    classes: list[str]


def digits_splits() -> dict[str, Split]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * 255 / 16).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = digits.target.astype(np.int64)
    where = np.random.default_rng(0).random(len(labels))  # ~80/10/10, like the hash split
    middle = (where >= 0.8) & (where < 0.9)
    parts = {"train": where < 0.8, "validation": middle, "test": where >= 0.9}
    classes = [str(label) for label in range(10)]
    return {name: Split(pixels[rows], labels[rows], classes) for name, rows in parts.items()}


@pytest.fixture(scope="module")
def digits():
    return digits_splits()


@pytest.fixture(scope="module")
def classifier(digits):
    return fit_feature_classifier(digits["train"], PARAMS.classifier, test=digits["test"])


@pytest.fixture(scope="module")
def train_samples(digits):
    """Two disjoint draws of real train images, samples_per_class per class: two sample sets
    of one perfect generator, with the requested labels they answer."""
    train, rng = digits["train"], np.random.default_rng(5)
    first, second = [], []
    for label in range(10):
        rows = rng.permutation(np.flatnonzero(train.labels == label))
        first.append(rows[: PARAMS.samples_per_class])
        second.append(rows[PARAMS.samples_per_class : 2 * PARAMS.samples_per_class])
    requested = requested_labels(10, PARAMS.samples_per_class)
    return train.pixels[np.concatenate(first)], train.pixels[np.concatenate(second)], requested


def test_the_classifier_separates_digits_and_survives_a_round_trip(digits, classifier, tmp_path):
    assert classifier.test_accuracy >= 0.9
    assert classifier.features(digits["test"].pixels).shape == (len(digits["test"].labels), 32)
    loaded = load_feature_classifier(classifier.save(tmp_path / "classifier.pt"))
    assert (
        loaded.classes == classifier.classes and loaded.test_accuracy == classifier.test_accuracy
    )
    np.testing.assert_array_equal(
        loaded.features(digits["test"].pixels), classifier.features(digits["test"].pixels)
    )


def test_the_classifier_is_deterministic_for_a_seed(digits):
    settings = ImageClassifierParams(epochs=1)
    first, second = (fit_feature_classifier(digits["validation"], settings) for _ in range(2))
    np.testing.assert_array_equal(
        first.features(digits["test"].pixels), second.features(digits["test"].pixels)
    )


def test_the_classifier_is_fitted_once_per_data_version(digits, tmp_path):
    path, settings = tmp_path / "classifier.pt", ImageClassifierParams(epochs=1)
    first = cached_feature_classifier(path, digits["validation"], digits["test"], settings, "v1")
    again = cached_feature_classifier(path, digits["validation"], digits["test"], settings, "v1")
    assert again.fit_seconds == first.fit_seconds  # loaded, not fitted again
    np.testing.assert_array_equal(
        again.features(digits["test"].pixels), first.features(digits["test"].pixels)
    )
    other = cached_feature_classifier(path, digits["train"], digits["test"], settings, "v2")
    assert other.data_version == "v2" and other.train_images == len(digits["train"].labels)
    assert load_feature_classifier(path).data_version == "v2"


def test_frechet_distance_agrees_with_sqrtm_and_handles_singular_covariances():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(400, 6)), rng.normal(0.5, 2.0, size=(400, 6))
    mean1, mean2 = first.mean(0), second.mean(0)
    cov1, cov2 = np.cov(first, rowvar=False), np.cov(second, rowvar=False)
    expected = (
        np.sum((mean1 - mean2) ** 2)
        + np.trace(cov1 + cov2)
        - 2 * np.trace(scipy.linalg.sqrtm(cov1 @ cov2).real)
    )
    assert frechet_distance(first, second) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(first, first) == pytest.approx(0.0, abs=1e-9)
    few = rng.normal(size=(5, 32))  # 5 rows in 32 dimensions: a rank-4 covariance
    distance = frechet_distance(few, rng.normal(size=(5, 32)))
    assert np.isfinite(distance) and distance > 0
    assert frechet_distance(few, few) == pytest.approx(0.0, abs=1e-8)


def test_kid_is_about_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 8))
    same, error = kernel_inception_distance(
        real, rng.normal(size=(300, 8)), subsets=20, subset_size=100, seed=0
    )
    assert abs(same) < 3 * error
    identical, _ = kernel_inception_distance(real, real, subsets=20, subset_size=100, seed=0)
    assert abs(identical) < 3 * error
    shifted, _ = kernel_inception_distance(
        real, rng.normal(0.5, 1.0, size=(300, 8)), subsets=20, subset_size=100, seed=0
    )
    assert shifted > 10 * error


def test_the_floor_is_far_below_the_trivial_ceiling(digits, classifier, train_samples):
    references = reference_metrics(classifier, digits["train"], digits["test"], PARAMS)
    assert references["floor_frechet_distance"] * 5 < references["trivial_frechet_distance"]
    assert references["floor_kid"] < references["trivial_kid"]
    assert references["floor_recall"] > references["trivial_recall"]
    assert references["floor_coverage"] >= 0.85 > 2 * references["trivial_coverage"]
    assert 0.8 < references["floor_density"] < 1.5 and references["trivial_density"] < 0.6
    assert references["floor_conditional_accuracy"] >= 0.95
    assert 0.7 < references["floor_feature_spread_ratio"] < 1.3
    # a second draw of real images scores like the floor
    first, _, requested = train_samples
    real = evaluate_image_samples(classifier, first, requested, digits["test"], PARAMS)
    assert real.metrics["frechet_distance"] < references["trivial_frechet_distance"] / 5


def test_a_generator_is_evaluated_with_its_references(digits, classifier):
    def generate(requested: np.ndarray, seed: int) -> np.ndarray:
        return trivial_samples(digits["train"], requested, noise=0.25, seed=seed)

    evaluation = evaluate_image_generator(
        generate, classifier, digits["train"], digits["test"], PARAMS
    )
    metrics = evaluation.metrics
    assert metrics["samples"] == 10 * PARAMS.samples_per_class
    assert metrics["frechet_distance"] == pytest.approx(metrics["trivial_frechet_distance"])
    assert metrics["classifier_test_accuracy"] == classifier.test_accuracy
    assert {"floor_recall", "conditional_accuracy_7", "kid_standard_error"} <= set(metrics)
    assert {"density", "coverage", "floor_coverage", "floor_feature_spread_ratio"} <= set(metrics)


def one_image_per_class(train, classifier, requested: np.ndarray) -> np.ndarray:
    """A collapsed generator: per class, the train image closest to its class's mean
    feature, repeated for every request of that class."""
    features = classifier.features(train.pixels)
    typical = [
        np.flatnonzero(train.labels == label)[
            np.argmin(
                np.linalg.norm(
                    features[train.labels == label] - features[train.labels == label].mean(0),
                    axis=1,
                )
            )
        ]
        for label in range(10)
    ]
    return train.pixels[np.array(typical)[requested]]


def test_a_collapsed_generator_is_precise_but_has_no_recall_or_spread(digits, classifier):
    train = digits["train"]
    requested = requested_labels(10, PARAMS.samples_per_class)
    collapsed = one_image_per_class(train, classifier, requested)
    metrics = evaluate_image_samples(
        classifier, collapsed, requested, digits["test"], PARAMS
    ).metrics
    assert metrics["precision"] >= 0.8
    assert metrics["recall"] <= 0.2
    assert metrics["feature_spread_ratio"] < 0.05
    assert metrics["conditional_accuracy"] >= 0.9  # accuracy alone cannot see the collapse


def test_a_generator_that_ignores_labels_scores_chance_accuracy(digits, classifier, train_samples):
    first, _, requested = train_samples
    shuffled = np.random.default_rng(2).permutation(requested)  # each sample under a wrong ask
    evaluation = evaluate_image_samples(classifier, first, shuffled, digits["test"], PARAMS)
    assert evaluation.metrics["conditional_accuracy"] < 0.25
    assert set(evaluation.per_sample["set"]) == {"generated", "real"}
    assert len(evaluation.per_sample) == len(first) + len(digits["test"].labels)


def test_density_and_coverage_are_not_inflated_by_noise():
    """Improved recall draws a ball around each sample, and a noisy sample's ball is large;
    coverage draws them around real points only (Naeem et al. 2020)."""
    rng = np.random.default_rng(0)
    real, other = rng.normal(size=(400, 8)), rng.normal(size=(400, 8))  # one distribution
    narrow = 0.6 * rng.normal(size=(400, 8))  # too little variety
    noisy = narrow.copy()
    noisy[:80] = 3.0 * rng.normal(size=(80, 8))  # a fifth of the samples are noise
    recall = {
        name: precision_recall(real, fake, nearest_k=3)["recall"]
        for name, fake in (("other", other), ("narrow", narrow), ("noisy", noisy))
    }
    covered = {
        name: density_coverage(real, fake, nearest_k=3)
        for name, fake in (("other", other), ("narrow", narrow), ("noisy", noisy))
    }
    assert recall["noisy"] > recall["other"] > 2 * recall["narrow"]  # noise beats real data
    assert covered["noisy"]["coverage"] <= covered["narrow"]["coverage"]
    assert covered["narrow"]["coverage"] < covered["other"]["coverage"]
    assert covered["noisy"]["density"] < covered["narrow"]["density"]

    # real data against real data: coverage 1 - 2^-k for an independent draw, density 1
    assert covered["other"]["coverage"] == pytest.approx(1 - 2**-3, abs=0.04)
    assert covered["other"]["density"] == pytest.approx(1.0, abs=0.1)
    wide = density_coverage(real, other, nearest_k=5)
    assert wide["coverage"] > 0.95 and wide["density"] == pytest.approx(1.0, abs=0.1)
    itself = density_coverage(real, real, nearest_k=3)  # each ball holds its centre + k
    assert itself == {"coverage": 1.0, "density": pytest.approx(4 / 3)}


def noisy_images(pixels: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """`pixels` plus Gaussian noise of `noise` times the pixel range: a weak generator."""
    spoiled = pixels + np.random.default_rng(seed).normal(0, noise * 255, pixels.shape)
    return np.clip(np.rint(spoiled), 0, 255).astype(np.uint8)


def card(name, evaluation) -> Scorecard:
    return Scorecard(
        name=name, metrics=evaluation.metrics, per_document=evaluation.per_sample, version=name
    )


def test_the_image_gate_tells_chance_from_a_real_improvement(digits, classifier, train_samples):
    first, second, requested = train_samples
    test = digits["test"]
    references = reference_metrics(classifier, digits["train"], test, PARAMS)
    trivial = trivial_samples(digits["train"], requested, PARAMS.trivial_noise, seed=0)
    evaluations = {
        name: evaluate_image_samples(classifier, pixels, requested, test, PARAMS)
        for name, pixels in (("first", first), ("second", second), ("trivial", trivial))
    }
    for evaluation in evaluations.values():
        evaluation.metrics.update(references)
    policy = ImagePromotionPolicy(min_relative_improvement=0.0)

    same = decide(
        card("first", evaluations["first"]), card("second", evaluations["second"]), policy
    )
    assert not same.checks["bootstrap"], same.reasons
    assert same.bootstrap["improvement_lower"] < 0 < same.bootstrap["improvement_upper"]
    assert (
        "generated samples"
        in same.reasons[
            same.reasons.index(
                next(reason for reason in same.reasons if "paired bootstrap" in reason)
            )
        ]
    )

    better = decide(
        card("first", evaluations["first"]), card("trivial", evaluations["trivial"]), policy
    )
    assert better.promote, better.reasons
    assert better.bootstrap["improvement_lower"] > 0
    worse = decide(
        card("trivial", evaluations["trivial"]), card("first", evaluations["first"]), policy
    )
    assert not worse.promote
    assert not worse.checks["bootstrap"] and not worse.checks["guard:coverage"]

    first_model = decide(card("first", evaluations["first"]), None, policy)
    assert first_model.promote and "trivial_frechet_distance" in first_model.reasons[0]


def test_the_image_gate_promotes_a_better_model_whose_recall_fell_below_a_noisy_champions(
    digits, classifier, train_samples
):
    first, _, requested = train_samples
    test, train = digits["test"], digits["train"]
    references = reference_metrics(classifier, train, test, PARAMS)
    means = np.stack([train.pixels[train.labels == label].mean(0) for label in range(10)])
    # Champion: real digits under noise. Challenger: real digits drawn 15% toward their
    # class mean, realistic but a little less varied than real: recall falls, coverage rises.
    weak = noisy_images(first, 0.1, seed=1)
    shrunk = means[requested] + 0.85 * (first - means[requested])
    better = np.clip(np.rint(shrunk), 0, 255).astype(np.uint8)
    evaluations = {
        name: evaluate_image_samples(classifier, pixels, requested, test, PARAMS)
        for name, pixels in (("weak", weak), ("better", better))
    }
    for evaluation in evaluations.values():
        evaluation.metrics.update(references)
    new, old = evaluations["better"].metrics, evaluations["weak"].metrics
    assert new["frechet_distance"] < 0.9 * old["frechet_distance"]
    assert new["recall"] < old["recall"] - 0.05 and new["coverage"] > old["coverage"]

    policy = ImagePromotionPolicy()
    decision = decide(
        card("better", evaluations["better"]), card("weak", evaluations["weak"]), policy
    )
    assert decision.promote, decision.reasons
    recall_guard = policy.model_copy(
        update={"guard_metrics": {"recall": GuardRule(direction="maximize", tolerance=0.05)}}
    )
    rejected = decide(
        card("better", evaluations["better"]), card("weak", evaluations["weak"]), recall_guard
    )
    assert not rejected.promote and not rejected.checks["guard:recall"]


def test_the_image_gate_rejects_a_collapse_that_lowers_the_frechet_distance(
    digits, classifier, train_samples
):
    """One typical image per class beats a very noisy champion on Fréchet distance, and even
    on coverage; its within-class spread is 0, under the real data's floor."""
    first, _, requested = train_samples
    test, train = digits["test"], digits["train"]
    collapsed = one_image_per_class(train, classifier, requested)
    references = reference_metrics(classifier, train, test, PARAMS)
    evaluations = {
        name: evaluate_image_samples(classifier, pixels, requested, test, PARAMS)
        for name, pixels in (("noisy", noisy_images(first, 0.5, seed=1)), ("collapsed", collapsed))
    }
    for evaluation in evaluations.values():
        evaluation.metrics.update(references)
    decision = decide(
        card("collapsed", evaluations["collapsed"]),
        card("noisy", evaluations["noisy"]),
        ImagePromotionPolicy(),
    )
    assert decision.checks["primary"] and decision.checks["bootstrap"]
    assert decision.checks["guard:coverage"]
    assert not decision.checks["guard:feature_spread_ratio"] and not decision.promote
    assert any(
        reason.startswith("guard feature_spread_ratio is past its floor:")
        and "the real data's floor_feature_spread_ratio" in reason
        and reason.endswith("the samples may have collapsed")
        for reason in decision.reasons
    )


def test_the_image_gate_refuses_evaluations_it_cannot_compare(digits, classifier, train_samples):
    first, second, requested = train_samples
    test = digits["test"]
    other = fit_feature_classifier(digits["validation"], ImageClassifierParams(epochs=1, seed=3))
    challenger = evaluate_image_samples(classifier, first, requested, test, PARAMS)
    champion = evaluate_image_samples(other, second, requested, test, PARAMS)
    with pytest.raises(ValueError, match="same feature classifier"):
        decide(card("a", challenger), card("b", champion), ImagePromotionPolicy())
    champion = evaluate_image_samples(classifier, second[:-10], requested[:-10], test, PARAMS)
    with pytest.raises(ValueError, match="different sample ids"):
        decide(card("a", challenger), card("b", champion), ImagePromotionPolicy())
    with pytest.raises(ValueError, match="must minimize it"):
        decide(
            card("a", challenger),
            card("a", challenger),
            ImagePromotionPolicy(direction="maximize"),
        )


def test_the_grid_has_one_row_per_class_and_readable_tiles(tmp_path):
    classes, per_class, scale, gap = 3, 4, 5, 2
    requested = requested_labels(classes, per_class + 1)  # one more than a row holds
    samples = np.zeros((len(requested), 8, 8, 1), np.uint8)
    samples[:, :, :, 0] = (40 + 60 * requested)[:, None, None]  # class r: brightness 40 + 60r
    path = write_sample_grid(
        samples, requested, tmp_path / "grid.png", per_class=per_class, scale=scale, gap=gap
    )
    grid = np.asarray(Image.open(path))
    tile = 8 * scale + gap
    assert grid.shape == (gap + classes * tile, gap + per_class * tile)
    for row in range(classes):
        for column in range(per_class):
            top, left = gap + row * tile, gap + column * tile
            block = grid[top : top + 8 * scale, left : left + 8 * scale]
            assert (block == 40 + 60 * row).all()
            assert (grid[top - gap : top, left : left + 8 * scale] == 128).all()  # the gap


def test_loss_curves_are_drawn(tmp_path):
    curves = {
        "generator": [(step, 2.0 / (1 + step)) for step in range(20)],
        "discriminator": [(step, 0.7) for step in range(20)],
    }
    path = write_loss_curves(curves, tmp_path / "losses.png")
    with Image.open(path) as picture:
        assert picture.format == "PNG"
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    # matplotlib's first two colours, in the order the curves are given
    generator = np.argwhere(np.abs(pixels - (31, 119, 180)).sum(-1) < 30)  # (n, [y, x])
    discriminator = np.argwhere(np.abs(pixels - (255, 127, 14)).sum(-1) < 30)
    assert len(generator) > 50 and len(discriminator) > 50, "both curves are drawn"
    # the generator's falling loss: its line sits lower (larger y) further right (bands clear
    # of the legend, which matplotlib puts where the lines are not)
    x = generator[:, 1]
    first, second, third, fourth = np.percentile(x, [5, 25, 45, 65])
    early = generator[(x >= first) & (x <= second), 0].mean()
    later = generator[(x >= third) & (x <= fourth), 0].mean()
    assert later > early
    only_one = write_loss_curves({"generator": curves["generator"]}, tmp_path / "one.png")
    with Image.open(only_one) as picture:
        pixels = np.asarray(picture.convert("RGB")).astype(int)
    assert not (np.abs(pixels - (255, 127, 14)).sum(-1) < 30).any(), "one curve, one line"
