"""The image modality's sections (`image:` in params.yaml): its data stages, training,
evaluation and registered model. They derive from the text sections where the stage is
the same (sources, rules, split, loop, promotion policy) and give their own defaults."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, field_validator, model_validator

from aigc.config.base import Section
from aigc.config.data import Rule, SourceBase, SplitFraction, SplitParams, unique_source_names
from aigc.config.registry import GuardRule, PromotionPolicy
from aigc.config.train import LoopParams
from aigc.models.configs import (
    DEFAULT_IMAGE_FAMILY,
    IMAGE_FAMILY_CONFIGS,
    ImageModelConfig,
    with_default_family,
)

# --- image data (collect, clean, label, version of the image modality) ------------------


class DigitsSource(SourceBase):
    """scikit-learn's handwritten digits: 1,797 real 8x8 grey images of 10 classes, offline."""

    type: Literal["digits"] = "digits"


class ImageFolderSource(SourceBase):
    """A directory of images, `class_name/*.png`: the label is the folder's name; files at the
    top level are unlabeled. Read recursively with the text folder source's refusal rules."""

    type: Literal["image_folder"] = "image_folder"
    path: str
    extensions: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
    missing_ok: bool = True
    allow_hard_links: bool = False  # as for the text folder source


class Cifar10Source(SourceBase):
    """CIFAR-10's binary batches (`data_batch_*.bin`, `test_batch.bin`) in a folder; class
    names from `batches.meta.txt` beside them, else CIFAR-10's own ten."""

    type: Literal["cifar10"] = "cifar10"
    path: str
    files: tuple[str, ...] = ("data_batch_*.bin", "test_batch.bin")  # glob patterns


ImageSource = Annotated[
    DigitsSource | ImageFolderSource | Cifar10Source, Field(discriminator="type")
]


class ImageCollectParams(Section):
    sources: tuple[ImageSource, ...] = (DigitsSource(name="digits"),)

    @model_validator(mode="after")
    def _unique_names(self) -> ImageCollectParams:
        return unique_source_names(self)


class ImageNearDuplicateRule(Rule):
    """Perceptual hash (imagehash.phash) within `max_distance` bits of a kept image's.

    On the digits, distance 1 quarantines none, 2 quarantines 19 of 1,797, 4 quarantines 135:
    distinct writers' 8x8 digits share hashes quickly, so the default only catches re-encodings
    and other copies that the pixel hash misses."""

    hash_size: int = Field(default=8, ge=2, le=16)  # a hash of hash_size**2 bits
    max_distance: int = Field(default=1, ge=0)


class ImageCleanParams(Section):
    """Decode with Pillow, convert to `mode` and `size`, quarantine what does not fit."""

    mode: Literal["L", "RGB"] = "L"
    size: tuple[int, int] = (8, 8)  # (width, height) every clean image has
    convert_mode: bool = True  # False: an image in another mode is quarantined (wrong_mode)
    resize: Literal["never", "stretch", "center_crop"] = "never"  # never: wrong_size
    max_pixels: int = Field(default=4096 * 4096, ge=1)  # larger: a decompression bomb
    exact_duplicate: Rule = Rule()
    near_duplicate: ImageNearDuplicateRule = ImageNearDuplicateRule()


class ImageSplitParams(SplitParams):
    # About 180 test images on the digits: fixed sample counts for the image metrics.
    test_fraction: SplitFraction = 0.1


class ImageLabelParams(Section):
    """The source's class; a row of `overrides_file` (id,label) wins; a hash split."""

    overrides_file: str = "data/labels/image_overrides.csv"
    split: ImageSplitParams = ImageSplitParams()


class ImageVersionParams(Section):
    push: bool = True  # to the DVC remote of the `version` section


# --- image training (model engineer's block; wired into ImageParams by the integrator) --


def _image_loop() -> LoopParams:
    # A flat schedule: each image family brings its own peak rate (`image.train.model.lr`),
    # which the schedule scales by lr(step) / loop.lr. A step budget, so a run reproduces;
    # the minutes cap only guards a slow machine. Only what differs from LoopParams is set.
    return LoopParams(
        lr=1e-3,
        min_lr=1e-3,
        warmup_steps=0,
        grad_clip=0.0,
        max_steps=600,  # the vae: ~1 minute on one loaded CPU core of this 2-core machine
        max_minutes=1.5,
        eval_every=200,
        eval_batches=4,
    )


class ImageTrainParams(Section):
    """Training an image generator (`aigc.image.training.prepare_image_job`). The loop's
    `weight_decay` and `betas` are not used: each family's config carries its own."""

    model: ImageModelConfig = Field(
        default_factory=lambda: IMAGE_FAMILY_CONFIGS[DEFAULT_IMAGE_FAMILY]()
    )
    batch_size: int = Field(default=64, ge=1)  # per worker
    seed: int = 1337
    loop: LoopParams = Field(default_factory=_image_loop)  # on the cluster of `train.ray`

    @field_validator("model", mode="before")
    @classmethod
    def _default_family(cls, value: Any) -> Any:
        return with_default_family(value, DEFAULT_IMAGE_FAMILY)

    @field_validator("loop", mode="before")
    @classmethod
    def _image_loop_defaults(cls, value: Any) -> Any:
        # A partial `loop:` mapping keeps the image defaults for the keys it leaves out.
        if isinstance(value, dict):
            return _image_loop().model_dump() | value
        return value


# --- image.evaluate ---------------------------------------------------------------------


class ImageClassifierParams(Section):
    """The small CNN whose features the image metrics are computed in (aigc.text.evaluate.
    image_classifier): fitted on the train split once per data version."""

    width: int = Field(default=16, ge=4)  # channels of the first conv; the second has twice
    feature_dim: int = Field(default=32, ge=2)  # the feature space of FD, KID, precision/recall
    epochs: int = Field(default=12, ge=1)
    batch_size: int = Field(default=64, ge=1)
    lr: float = Field(default=5e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    seed: int = 0


class ImageEvaluateParams(Section):
    """Evaluation of an image generator on the test split; the same settings, seed and
    classifier give the same figures. Every measure depends on sample counts: keep them fixed
    when comparing models."""

    classifier: ImageClassifierParams = ImageClassifierParams()
    samples_per_class: int = Field(default=100, ge=2)  # generated per class, for every measure
    kid_subsets: int = Field(default=50, ge=2)
    kid_subset_size: int = Field(default=100, ge=2)  # capped at the smaller set
    nearest_k: int = Field(default=3, ge=1)  # radii of precision/recall, density/coverage
    trivial_noise: float = Field(default=0.25, ge=0)  # the ceiling: class mean + N(0, this),
    # in units of the pixel range
    grid_per_class: int = Field(default=10, ge=1)  # tiles per row of the sample grid
    grid_scale: int = Field(default=4, ge=1)  # nearest-neighbour upscaling of each tile
    grid_gap: int = Field(default=2, ge=0)  # pixels between tiles
    seed: int = 0  # the root of every sampling seed


def _image_guards() -> dict[str, GuardRule]:
    return {
        "conditional_accuracy": GuardRule(direction="maximize", tolerance=0.02),
        "coverage": GuardRule(direction="maximize", tolerance=0.05),
        "feature_spread_ratio": GuardRule(
            rule="floor", reference="floor_feature_spread_ratio", tolerance=0.5, relative=True
        ),
    }


class ImagePromotionPolicy(PromotionPolicy):
    """The image gate: Fréchet distance in the classifier's features (lower is better), with
    a paired bootstrap over resampled sample and test sets, guards on label control,
    coverage and a floor on within-class spread, and the trivial per-class-mean generator as
    the baseline a first model must beat."""

    primary_metric: str = "frechet_distance"  # minimized, as the text gate's
    min_relative_improvement: NonNegativeFloat = 0.02
    guard_metrics: dict[str, GuardRule] = Field(default_factory=_image_guards)
    bootstrap_samples: NonNegativeInt = 300
    baseline_metric: str | None = "trivial_frechet_distance"


class ImageRegistryParams(Section):
    model_name: str = "aigc-image"
    experiment: str = "aigc-image"  # the MLflow experiment of image runs
    policy: ImagePromotionPolicy = ImagePromotionPolicy()


class ImageParams(Section):
    """The image modality: its own data stages, model, evaluation and registered model.
    Training runs on the cluster `train.ray` names and tracks to `tracking`'s store."""

    collect: ImageCollectParams = ImageCollectParams()
    clean: ImageCleanParams = ImageCleanParams()
    label: ImageLabelParams = ImageLabelParams()
    version: ImageVersionParams = ImageVersionParams()
    train: ImageTrainParams = ImageTrainParams()
    evaluate: ImageEvaluateParams = ImageEvaluateParams()
    registry: ImageRegistryParams = ImageRegistryParams()
