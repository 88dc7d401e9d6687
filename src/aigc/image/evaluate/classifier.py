"""The yardstick for images: a small CNN trained on the train split, whose features stand in
for Inception's (whose weights cannot be downloaded here).

    classifier = fit_feature_classifier(train, params.classifier, test=test)  # ImageSplits
    classifier.test_accuracy; classifier.fit_seconds
    classifier.features(pixels)      # (N, D) float64, the space of FD, KID, precision/recall
    classifier.predict(pixels)       # (N,) class indices: conditional accuracy
    classifier.save(path); load_feature_classifier(path)
    classifier = cached_feature_classifier(path, train, test, settings, data_version)

Fitted once per data version and kept (`save`), so that a challenger and the champion it is
compared with are measured with the same features: numbers from two classifiers do not
compare. Deterministic on CPU for a seed: the same split and settings give the same weights.
Inputs are `ImageSplit`-shaped: uint8 pixels (N, H, W, C), int64 labels, class names.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from aigc.config import ImageClassifierParams

_BATCH = 512  # rows per forward pass when extracting features


class Images(Protocol):
    """What `aigc.image.dataset.ImageSplit` provides."""

    pixels: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64, indices into classes
    classes: list[str]


class FeatureNetwork(nn.Module):
    """Convolutions down to a 2×2 map, a linear layer to `feature_dim` (the features), then
    ReLU and the class logits. Stride-2 convolutions halve the image until it is 4×4 or
    smaller, so 8×8 digits and 32×32 CIFAR both work."""

    def __init__(self, channels: int, size: int, classes: int, width: int, feature_dim: int):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        downsamplings = max(1, math.ceil(math.log2(max(size, 4) / 4)))
        for index in range(downsamplings):
            inputs = width if index == 0 else 2 * width
            layers += [nn.Conv2d(inputs, 2 * width, 3, stride=2, padding=1), nn.ReLU()]
        layers += [nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(8 * width, feature_dim)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(feature_dim, classes))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(images)  # (B, C, H, W) -> (B, feature_dim)
        return features, self.head(features)  # (B, classes)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread: on tensors this small, more threads only wait for each other
    (a fit took 4 s on one thread and 54 s on two on a busy 2-core machine), and the result
    does not depend on the machine's core count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def to_model_input(pixels: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, C) -> float (N, C, H, W) in [-1, 1], the in-model convention."""
    if pixels.dtype != np.uint8 or pixels.ndim != 4:
        raise ValueError(f"pixels must be uint8 (N, H, W, C), got {pixels.dtype} {pixels.shape}")
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    return tensor.float() / 127.5 - 1.0


@dataclass(frozen=True)
class FeatureClassifier:
    network: FeatureNetwork
    classes: tuple[str, ...]
    image_shape: tuple[int, int, int]  # (H, W, C)
    settings: ImageClassifierParams
    test_accuracy: float  # on the test split, NaN when none was given
    train_images: int
    fit_seconds: float
    # Per-feature mean and standard deviation on the train split: features are standardized
    # with them, so that every dimension counts alike in FD and KID's kernel sees unit scale.
    feature_mean: np.ndarray | None = None  # (D,)
    feature_std: np.ndarray | None = None  # (D,)
    data_version: str | None = None

    def _run(self, pixels: np.ndarray, part: int) -> np.ndarray:
        if tuple(pixels.shape[1:]) != self.image_shape:
            raise ValueError(
                f"images of shape {tuple(pixels.shape[1:])} given to a classifier fitted on "
                f"{self.image_shape}; generate at the data's size and mode"
            )
        self.network.eval()
        outputs = []
        with torch.no_grad(), _one_thread():
            for start in range(0, len(pixels), _BATCH):
                batch = to_model_input(pixels[start : start + _BATCH])
                outputs.append(self.network(batch)[part].double().numpy())
        width = self.settings.feature_dim if part == 0 else len(self.classes)
        return np.concatenate(outputs) if outputs else np.zeros((0, width))

    def features(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 -> (N, feature_dim) float64, standardized on the train split."""
        raw = self._run(pixels, 0)
        if self.feature_mean is None or self.feature_std is None:
            return raw
        return (raw - self.feature_mean) / self.feature_std

    def predict(self, pixels: np.ndarray) -> np.ndarray:
        """(N, H, W, C) uint8 -> (N,) int64 class indices."""
        return self._run(pixels, 1).argmax(axis=1).astype(np.int64)

    def save(self, path: Path) -> Path:
        """Weights, settings and figures in one torch file, loadable without params."""
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(
            {
                "state_dict": self.network.state_dict(),
                "classes": list(self.classes),
                "image_shape": list(self.image_shape),
                "settings": self.settings.model_dump(),
                "test_accuracy": self.test_accuracy,
                "train_images": self.train_images,
                "fit_seconds": self.fit_seconds,
                "feature_mean": torch.from_numpy(self.feature_mean),
                "feature_std": torch.from_numpy(self.feature_std),
                "data_version": self.data_version,
            },
            path,
        )
        return path

    def describe(self) -> dict[str, Any]:
        """Figures to log beside the evaluation."""
        return {
            "classifier_test_accuracy": self.test_accuracy,
            "classifier_train_images": float(self.train_images),
            "classifier_fit_seconds": self.fit_seconds,
        }


def load_feature_classifier(path: Path) -> FeatureClassifier:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    settings = ImageClassifierParams(**saved["settings"])
    height, _, channels = saved["image_shape"]
    network = _network(settings, channels, height, len(saved["classes"]))
    network.load_state_dict(saved["state_dict"])
    return FeatureClassifier(
        network=network,
        classes=tuple(saved["classes"]),
        image_shape=tuple(saved["image_shape"]),
        settings=settings,
        test_accuracy=float(saved["test_accuracy"]),
        train_images=int(saved["train_images"]),
        fit_seconds=float(saved["fit_seconds"]),
        feature_mean=saved["feature_mean"].numpy(),
        feature_std=saved["feature_std"].numpy(),
        data_version=saved["data_version"],
    )


def _network(settings: ImageClassifierParams, channels: int, size: int, classes: int):
    return FeatureNetwork(channels, size, classes, settings.width, settings.feature_dim)


def fit_feature_classifier(
    train: Images,
    settings: ImageClassifierParams,
    *,
    test: Images | None = None,
    data_version: str | None = None,
) -> FeatureClassifier:
    """Train on `train` with Adam and cross-entropy for `settings.epochs`; report the accuracy
    on `test`. The global torch random state is left as it was."""
    classes = list(train.classes)
    if len(np.unique(train.labels)) < 2:
        raise ValueError("the image classifier needs train images of at least two classes")
    started = time.perf_counter()
    _, height, _, channels = train.pixels.shape
    with torch.random.fork_rng(devices=[]), _one_thread():
        torch.manual_seed(settings.seed)
        network = _network(settings, channels, height, len(classes))
        order = torch.Generator().manual_seed(settings.seed)
        inputs = to_model_input(train.pixels)  # (N, C, H, W)
        targets = torch.from_numpy(np.asarray(train.labels, dtype=np.int64))
        optimizer = torch.optim.AdamW(
            network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
        )
        network.train()
        for _ in range(settings.epochs):
            for batch in torch.randperm(len(inputs), generator=order).split(settings.batch_size):
                _, logits = network(inputs[batch])
                loss = nn.functional.cross_entropy(logits, targets[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    classifier = FeatureClassifier(
        network=network,
        classes=tuple(classes),
        image_shape=tuple(train.pixels.shape[1:]),
        settings=settings,
        test_accuracy=math.nan,
        train_images=len(inputs),
        fit_seconds=0.0,
        data_version=data_version,
    )
    raw = classifier.features(train.pixels)  # (N, D), not yet standardized
    classifier = replace(
        classifier,
        feature_mean=raw.mean(axis=0),
        feature_std=np.maximum(raw.std(axis=0), 1e-6),  # a dead feature stays 0, not NaN
        fit_seconds=time.perf_counter() - started,
    )
    if test is None or len(test.labels) == 0:
        return classifier
    accuracy = float(np.mean(classifier.predict(test.pixels) == np.asarray(test.labels)))
    return replace(classifier, test_accuracy=accuracy)


def cached_feature_classifier(
    path: Path, train: Images, test: Images, settings: ImageClassifierParams, data_version: str
) -> FeatureClassifier:
    """The classifier saved at `path` when it was fitted on `data_version` with `settings`;
    otherwise a new fit, saved there. A run's challenger and champion are measured with it,
    and so is a later run on the same data version."""
    if path.exists():
        saved = load_feature_classifier(path)
        if saved.data_version == data_version and saved.settings == settings:
            return saved
    classifier = fit_feature_classifier(train, settings, test=test, data_version=data_version)
    classifier.save(path)
    return classifier
