"""Typed configuration: params.yaml, one section per stage, checked at the edge.

The pydantic sections below are the only definition of every setting and its default;
params.yaml holds a project's own choices on top of them. `load_params(path, overrides)`
reads the file, layers the params overlay that AIGC_PARAMS_OVERLAY names, if any (a profile
sets it: `aigc --profile stack`), applies `--set section.key=value` overrides and validates
everything into
frozen models; an unknown key or a wrong type raises `ConfigError` naming the key. The
user's file is never written: `write_effective_params` records a run's whole configuration
in a generated file that DVC's stages read (`ProjectPaths.effective_params`).

Overrides address list items by index or, where items have a `name`, by name:
`--set collect.sources.inbox.path=/srv/inbox`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import urllib.parse
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    ValidationError,
    field_validator,
    model_validator,
)

from aigc.errors import UserError
from aigc.models.configs import (
    DEFAULT_FAMILY,
    DEFAULT_IMAGE_FAMILY,
    FAMILY_CONFIGS,
    IMAGE_FAMILY_CONFIGS,
    ImageModelConfig,
    ModelConfig,
    with_default_family,
)

DEFAULT_PARAMS_FILE = "params.yaml"
# Names a params file layered between params.yaml and --set (aigc.stack.profile sets it).
PARAMS_OVERLAY_VARIABLE = "AIGC_PARAMS_OVERLAY"


class ConfigError(UserError, ValueError):
    """A params file or override that cannot be used; the message says which key and why."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- collect ---------------------------------------------------------------------------


class SourceBase(Section):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    on_error: Literal["fail", "skip"] = "fail"


class BuiltinSource(SourceBase):
    """English technical prose that ships with CPython: pydoc topics and stdlib docstrings."""

    type: Literal["builtin"] = "builtin"
    include: tuple[Literal["topics", "docstrings"], ...] = ("topics", "docstrings")
    exclude_packages: tuple[str, ...] = (
        "test",
        "tests",
        "idlelib",
        "lib2to3",
        "turtledemo",
        "ensurepip",
        "site-packages",
        "dist-packages",
    )


class FolderSource(SourceBase):
    """A directory of .txt, .md, .jsonl and .csv files, read recursively."""

    type: Literal["folder"] = "folder"
    path: str
    extensions: tuple[str, ...] = (".txt", ".md", ".jsonl", ".csv")
    jsonl_field: str = "text"
    csv_column: str = "text"
    missing_ok: bool = True
    # A file with several hard links may be the same file as one outside the folder: refused
    # unless this is set (the folder must then be trusted like the files it can reach).
    allow_hard_links: bool = False


HTTP_SCHEMES = ("http", "https")


def http_origin(url: str) -> str:
    """`scheme://host:port` of an http(s) URL, the port always written; ValueError otherwise."""
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in HTTP_SCHEMES or not parts.hostname:
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    port = parts.port or (443 if scheme == "https" else 80)  # .port: ValueError if not a number
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{scheme}://{host}:{port}"


def _is_origin(text: str) -> bool:
    try:
        http_origin(text)
    except ValueError:
        return False
    parts = urllib.parse.urlsplit(text)
    return parts.path in ("", "/") and not (parts.query or parts.fragment or parts.username)


class HttpSource(SourceBase):
    """A paginated JSON or JSON-lines HTTP API."""

    type: Literal["http"] = "http"
    url: str
    format: Literal["json", "jsonl"] = "json"
    records_field: str = "items"
    text_field: str = "text"
    pagination: Literal["page", "cursor", "none"] = "page"
    page_param: str = "page"
    first_page: int = 1
    cursor_param: str = "cursor"
    next_cursor_field: str = "next_cursor"
    max_pages: int = Field(default=1000, ge=1)
    timeout_seconds: float = Field(default=10.0, gt=0)
    retries: int = Field(default=1, ge=0)  # for transient failures only; see sources/http.py
    backoff_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)  # caps Retry-After too
    headers: dict[str, str] = Field(default_factory=dict)  # sent only to the url's origin
    max_response_bytes: int = Field(default=50 * 1024 * 1024, ge=1)  # per page
    # Origins ("https://cdn.example.com:443") a redirect may lead to besides the url's own.
    allow_redirects_to: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _http_only(self) -> HttpSource:
        try:
            http_origin(self.url)
        except ValueError:
            raise ValueError(
                f"source {self.name!r}: url {self.url!r} is not an http:// or https:// URL; "
                "an http source reads only those (put local files in a `folder` source)"
            ) from None
        for origin in self.allow_redirects_to:
            if not _is_origin(origin):
                raise ValueError(
                    f"source {self.name!r}: allow_redirects_to entry {origin!r} is not an "
                    'origin; write scheme, host and port only, e.g. "https://cdn.example.com:443"'
                )
        return self


Source = Annotated[BuiltinSource | FolderSource | HttpSource, Field(discriminator="type")]


class CollectParams(Section):
    sources: tuple[Source, ...] = (BuiltinSource(name="stdlib"),)

    @model_validator(mode="after")
    def _unique_names(self) -> CollectParams:
        return unique_source_names(self)


def unique_source_names(section: Any) -> Any:
    """`section` (whose sources have names) if no two sources share a name."""
    names = [source.name for source in section.sources]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"source names must be unique; repeated: {duplicated}")
    return section


# --- clean -----------------------------------------------------------------------------


class Rule(Section):
    enabled: bool = True


class NormalizeRule(Rule):
    unicode_form: Literal["NFC", "NFKC"] = "NFC"
    fold_whitespace: bool = True


class StripMarkupRule(Rule):
    rest_roles: bool = True
    rest_directives: bool = True
    doctest_prompts: bool = True
    heading_underlines: bool = True


class LengthRule(Rule):
    min_chars: int = Field(default=64, ge=0)
    max_chars: int = Field(default=20_000, ge=1)


class GarbledRule(Rule):
    min_printable_ratio: float = Field(default=0.95, ge=0, le=1)
    min_letter_ratio: float = Field(default=0.4, ge=0, le=1)


class NearDuplicateRule(Rule):
    threshold: float = Field(default=0.85, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=5, ge=1)
    seed: int = 1


class CleanParams(Section):
    normalize: NormalizeRule = NormalizeRule()
    strip_markup: StripMarkupRule = StripMarkupRule()
    flagged: Rule = Rule()
    garbled: GarbledRule = GarbledRule()
    length: LengthRule = LengthRule()
    exact_duplicate: Rule = Rule()
    near_duplicate: NearDuplicateRule = NearDuplicateRule()


# --- label -----------------------------------------------------------------------------


class TopicRules(Section):
    """How one topic is recognised: keywords, regular expressions, module prefixes."""

    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    min_keyword_hits: int = Field(default=2, ge=1)


class LabelParams(Section):
    topics: dict[str, TopicRules] = Field(default_factory=dict)
    fallback_label: str = "other"
    label_model: Literal["majority", "weighted"] = "weighted"
    label_model_iterations: int = Field(default=5, ge=1)
    overrides_file: str = "data/labels/overrides.csv"

    @model_validator(mode="after")
    def _fallback_is_not_a_topic(self) -> LabelParams:
        if self.fallback_label in self.topics:
            raise ValueError(f"fallback_label {self.fallback_label!r} is also a topic name")
        return self


# A split's share of the rows; a section that derives from SplitParams gives other defaults
# with this type, so the bounds are written once.
SplitFraction = Annotated[float, Field(ge=0, lt=0.5)]


class SplitParams(Section):
    validation_fraction: SplitFraction = 0.05
    test_fraction: SplitFraction = 0.05
    salt: str = "aigc-split-v1"


# --- version ---------------------------------------------------------------------------


class VersionParams(Section):
    remote_name: str = "storage"
    remote_url: str = "dvc-remote"
    push: bool = True


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


# --- train / evaluate / tracking -------------------------------------------------------


class TokenizerParams(Section):
    vocab_size: int = Field(default=1024, ge=300)  # byte-level BPE, trained on the train split
    min_frequency: int = Field(default=2, ge=1)


class LoopParams(Section):
    """The training loop (aigc.train.loop): optimizer, schedule, budgets, checkpoints.

    Budgets: training stops at the first of max_steps, max_tokens, max_minutes reached."""

    lr: float = Field(default=3e-3, gt=0)
    min_lr: float = Field(default=3e-4, ge=0)
    weight_decay: float = Field(default=0.1, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = Field(default=50, ge=0)
    lr_decay_steps: int | None = Field(default=None, gt=0)  # None: max_steps
    grad_clip: float = Field(default=1.0, ge=0)  # max global grad norm; 0 disables clipping
    grad_accumulation: int = Field(default=1, ge=1)  # micro-batches per optimizer step
    max_steps: int | None = Field(default=2000, gt=0)
    max_tokens: int | None = Field(default=None, gt=0)
    max_minutes: float | None = Field(default=1.6, gt=0)
    eval_every: int = Field(default=100, ge=0)  # steps between validations; 0: at the end
    eval_batches: int = Field(default=10, ge=1)
    checkpoint_every: int = Field(default=200, ge=0)  # steps between checkpoints; 0: at the end
    bf16: bool = True  # CUDA only
    compile: bool = False  # CUDA only

    @model_validator(mode="after")
    def _consistent(self) -> LoopParams:
        if self.max_steps is None and self.max_tokens is None and self.max_minutes is None:
            raise ValueError("a budget is needed: set max_steps, max_tokens or max_minutes")
        if not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"betas={self.betas} must be two numbers in [0, 1)")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr={self.min_lr} must not exceed lr={self.lr}")
        return self


class RayParams(Section):
    address: str | None = None  # None: start a local Ray; "auto" or ray://host:port: join
    num_workers: int = Field(default=2, ge=1)
    use_gpu: bool | Literal["auto"] = "auto"  # auto: GPUs when the cluster has them
    cpus_per_worker: float = Field(default=1.0, gt=0)
    max_failures: int = Field(default=2, ge=-1)  # worker crashes survived (resume)
    storage_path: str = ".aigc/ray"  # checkpoints; shared storage on a real cluster
    checkpoints_to_keep: int = Field(default=2, ge=1)  # the newest; older ones are deleted


class TrainParams(Section):
    model: ModelConfig = Field(default_factory=lambda: FAMILY_CONFIGS[DEFAULT_FAMILY]())
    tokenizer: TokenizerParams = TokenizerParams()
    batch_size: int = Field(default=16, ge=1)  # per worker
    seed: int = 1337
    loop: LoopParams = LoopParams()
    ray: RayParams = RayParams()

    @field_validator("model", mode="before")
    @classmethod
    def _default_family(cls, value: Any) -> Any:
        return with_default_family(value)


class EvaluateParams(Section):
    """Evaluation on the test split; the same settings and seed give the same report."""

    batch_size: int = Field(default=16, ge=1)  # windows scored per forward pass
    continuation_documents: int = Field(default=24, ge=0)  # 0 switches continuation off
    prompt_fraction: float = Field(default=0.5, gt=0, lt=1)  # share of a document as prompt
    max_new_tokens: int = Field(default=64, ge=1)  # cap on a continuation's length
    samples_per_label: int = Field(default=10, ge=0)  # label control; 0 switches it off
    sample_tokens: int = Field(default=96, ge=1)  # length of a label-control sample
    temperature: float = Field(default=0.8, ge=0)  # 0: greedy
    top_k: int | None = Field(default=50, ge=1)
    seed: int = 0  # the root of every sampling seed
    shards: int = Field(default=2, ge=1)  # Ray tasks the evaluation is spread over


class TrackingParams(Section):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str | None = "mlflow/artifacts"  # None: where the tracking server says
    experiment: str = "aigc-text"


Direction = Literal["minimize", "maximize"]


GuardKind = Literal["regression", "closeness", "floor"]


class GuardRule(BaseModel):
    """How the gate judges one guard metric (aigc.registry.decide's table says why each
    default guard has its rule). `tolerance` is absolute, or a fraction when `relative` (of the
    champion's value for `regression`, of the real data's value otherwise).

    regression  `direction` is better: worse than the champion by at most `tolerance`.
    closeness   real data has a value of its own, the metric `reference` of the same
                evaluation: no further from it than the champion is from its own, plus
                `tolerance`. For figures where more is not better (diversity).
    floor       worse than the real data's value `reference` by at most `tolerance` (a
                floor when maximizing): against collapse; the champion is not consulted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: GuardKind = "regression"
    direction: Direction = "maximize"
    tolerance: float = Field(default=0.0, ge=0.0)
    relative: bool = False
    reference: str | None = None  # closeness and floor: the real data's value of the metric

    @model_validator(mode="after")
    def _reference_fits_rule(self) -> GuardRule:
        if self.rule == "regression" and self.reference is not None:
            raise ValueError(
                f"reference={self.reference!r} is only read by the closeness and floor rules; "
                "set rule: closeness (or floor), or drop reference"
            )
        if self.rule != "regression" and self.reference is None:
            raise ValueError(
                f"rule {self.rule} compares with the real data's value: name the metric that "
                "holds it in reference (e.g. reference: real_distinct_2)"
            )
        return self


def _default_guards() -> dict[str, GuardRule]:
    return {
        "label_control_accuracy": GuardRule(direction="maximize", tolerance=0.05),
        "distinct_2": GuardRule(rule="closeness", reference="real_distinct_2", tolerance=0.05),
    }


class PromotionPolicy(BaseModel):
    """When a challenger replaces the champion (see the module docstring for each check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_metric: str = "test_bits_per_character"
    direction: Direction = "minimize"
    # Non-negative types rather than Field(ge=0): ImagePromotionPolicy gives these other
    # defaults and must keep the bounds, which a redeclared Field would drop.
    min_absolute_improvement: NonNegativeFloat = 0.0
    min_relative_improvement: NonNegativeFloat = 0.01
    guard_metrics: dict[str, GuardRule] = Field(default_factory=_default_guards)
    bootstrap_samples: NonNegativeInt = 1000
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: int = 0
    baseline_metric: str | None = "unigram_bits_per_character"

    @field_validator("guard_metrics", mode="before")
    @classmethod
    def _guard_defaults(cls, value: Any) -> Any:
        # An entry for a default guard keeps the default's keys it leaves out, unless it names
        # another rule: `distinct_2.tolerance=0.1` must not turn closeness into regression.
        if not isinstance(value, dict):
            return value
        defaults = cls.model_fields["guard_metrics"].default_factory()  # type: ignore[misc]
        merged = dict(value)
        for name, entry in value.items():
            default = defaults.get(name)
            if (
                isinstance(entry, dict)
                and default is not None
                and default.rule == entry.get("rule", default.rule)
            ):
                merged[name] = default.model_dump() | entry
        return merged


class RegistryParams(Section):
    model_name: str = "aigc-text"
    policy: PromotionPolicy = PromotionPolicy()


class RunParams(Section):
    lock_timeout_minutes: float = Field(default=60.0, ge=0)
    # How long a command waits for Prefect's temporary API server to answer (run, data
    # refresh, schedule). Prefect's own limit, 20 s, is missed on a loaded machine; this one
    # replaces it (and PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS) for aigc's server.
    prefect_start_timeout_seconds: float = Field(default=120.0, gt=0)


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
    """Training an image generator (`aigc.train.job.prepare_image_job`). The loop's
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
    """The small CNN whose features the image metrics are computed in (aigc.evaluate.
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


class Params(Section):
    collect: CollectParams = CollectParams()
    clean: CleanParams = CleanParams()
    label: LabelParams = LabelParams()
    split: SplitParams = SplitParams()
    version: VersionParams = VersionParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    registry: RegistryParams = RegistryParams()
    run: RunParams = RunParams()
    image: ImageParams = ImageParams()

    def section_hash(self, *sections: str) -> str:
        """A stable hash of the named sections (all when none), for keys and tags.

        Where a run trains (PLACEMENT_SETTINGS) is left out: the same data, code and params
        make the same model on a laptop and on a cluster, and give the same training key."""
        data = self.model_dump(mode="json")
        for section, *path, key in PLACEMENT_SETTINGS:
            data[section] = _without(data[section], [*path, key])
        chosen = {name: data[name] for name in (sections or tuple(sorted(data)))}
        blob = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Settings that say where training runs, not what it computes (out of params hashes).
PLACEMENT_SETTINGS = (
    ("train", "ray", "address"),
    ("train", "ray", "storage_path"),
    ("train", "ray", "max_failures"),
    ("train", "ray", "checkpoints_to_keep"),
)


def _without(data: dict, path: list[str]) -> dict:
    """A copy of nested `data` without the key at `path`."""
    head, *rest = path
    if head not in data:
        return data
    kept = dict(data)
    if rest:
        kept[head] = _without(data[head], rest)
    else:
        del kept[head]
    return kept


def is_uri(location: str) -> bool:
    """Whether a storage setting is a URI (s3://bucket/…), not a folder."""
    return "://" in location


# --- loading ---------------------------------------------------------------------------


def parse_override(text: str) -> tuple[list[str], Any]:
    """`section.key=value` → (["section", "key"], value parsed as YAML)."""
    key, sep, raw_value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not of the form section.key=value")
    try:
        value = yaml.safe_load(raw_value) if raw_value.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({error})") from error
    return [part for part in key.strip().split(".")], value


def _child_key(container: Any, part: str, dotted: str) -> Any:
    """The index (list) or key (dict) that `part` names inside `container`."""
    if isinstance(container, list):
        if part.lstrip("-").isdigit():
            index = int(part)
            if -len(container) <= index < len(container):
                return index
            raise ConfigError(f"override {dotted!r}: index {index} is out of range")
        for index, item in enumerate(container):
            if isinstance(item, dict) and item.get("name") == part:
                return index
        names = [item.get("name") for item in container if isinstance(item, dict)]
        raise ConfigError(f"override {dotted!r}: no item named {part!r} (items: {names})")
    if isinstance(container, dict):
        return part
    raise ConfigError(f"override {dotted!r}: {part!r} is inside a value, not a section")


def apply_override(data: dict, path: list[str], value: Any) -> None:
    dotted = ".".join(path)
    node: Any = data
    for part in path[:-1]:
        key = _child_key(node, part, dotted)
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    node[_child_key(node, path[-1], dotted)] = value


def _key_path(loc: tuple) -> list[str]:
    """The key as the user writes it: pydantic puts a union's tag (the family) in the path."""
    parts = [str(part) for part in loc]
    return [
        part
        for index, part in enumerate(parts)
        if not (index and parts[index - 1] == "model" and part in FAMILY_CONFIGS)
    ]


def _format_validation_error(error: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for item in error.errors():
        location = ".".join(_key_path(item["loc"]))
        if item["type"] == "extra_forbidden":
            lines.append(f"  - unknown key {location!r}: remove it or check its spelling")
        else:
            given = item.get("input")
            shown = "" if isinstance(given, dict | list) else f" (got {given!r})"
            lines.append(f"  - {location}: {item['msg']}{shown}")
    return "\n".join(lines)


def read_overlay(path: Path) -> dict:
    """The params overlay a profile names; its settings apply as --set overrides would."""
    if not path.is_file():
        raise ConfigError(
            f"{PARAMS_OVERLAY_VARIABLE}={path}: no such file; bring the stack up "
            f"(`aigc stack up`) or unset {PARAMS_OVERLAY_VARIABLE}"
        )
    return read_params_data(path)


def _leaves(data: dict, prefix: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    """Every setting of a nested mapping as (key path, value); lists are values."""
    leaves = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            leaves += _leaves(value, (*prefix, str(key)))
        else:
            leaves.append(([*prefix, str(key)], value))
    return leaves


def read_params_data(path: Path | str | None) -> dict:
    """The raw mapping in a params file; a missing default file means all defaults."""
    if path is None:
        path = Path(DEFAULT_PARAMS_FILE)
        if not path.exists():
            return {}
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"params file {path} does not exist; pass --params FILE")
    if path.is_dir():
        raise ConfigError(f"params file {path} is a folder; pass --params FILE (a YAML file)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"params file {path} is not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise ConfigError(f"params file {path} is not UTF-8 text ({error.reason})") from None
    except OSError as error:
        raise ConfigError(
            f"params file {path} cannot be read: {error.strerror}; make it readable"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"params file {path} must hold a mapping of sections")
    return data


def load_params(
    path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> Params:
    """Read, override and validate; the single way aigc turns configuration into Params."""
    data = copy.deepcopy(read_params_data(path))
    overlay = os.environ.get(PARAMS_OVERLAY_VARIABLE)
    if overlay:
        for keys, value in _leaves(read_overlay(Path(overlay))):
            apply_override(data, keys, value)
    overridden = []
    for text in overrides:
        keys, value = parse_override(text)
        apply_override(data, keys, value)
        overridden.append(keys)
    _forget_other_family(data, overridden)
    origin = str(path or DEFAULT_PARAMS_FILE)
    origin += f" with the overlay {overlay}" if overlay else ""
    origin += " with --set overrides" if overrides else ""
    try:
        return Params.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_format_validation_error(error, origin)) from None


def _forget_other_family(data: dict, overridden: list[list[str]]) -> None:
    """`--set train.model.family=hf` on a file written for another family: the file's keys
    that the new family does not have (GPT's n_layer, say) are dropped, not reported as
    unknown; keys set by --set itself are always kept, and checked."""
    for keys in overridden:
        if keys[-2:] != ["model", "family"]:
            continue
        prefix = keys[:-1]  # the model section's path
        section: Any = data
        for key in prefix:
            section = section.get(key) if isinstance(section, dict) else None
        family = section.get("family") if isinstance(section, dict) else None
        known = (FAMILY_CONFIGS | IMAGE_FAMILY_CONFIGS).get(family)
        if known is None:
            continue
        set_here = {
            other[len(prefix)]
            for other in overridden
            if other[: len(prefix)] == prefix and len(other) > len(prefix)
        }
        for key in list(section):
            if key not in known.model_fields and key not in set_here:
                del section[key]


EFFECTIVE_HEADER = (
    "# Generated by aigc for each run: params.yaml with the run's --set overrides and every\n"
    "# default filled in. DVC's stages read it, so dvc.lock and `dvc params diff` show what\n"
    "# ran. Do not edit: change params.yaml or pass --set.\n"
)


def effective_yaml(params: Params) -> str:
    """The whole configuration as YAML, every default included."""
    data = params.model_dump(mode="json")
    return EFFECTIVE_HEADER + yaml.safe_dump(data, sort_keys=False, width=1000)


def write_effective_params(params: Params, path: Path) -> bool:
    """Record `params` where the DVC stages read them; False when the file already held them.

    The user's params.yaml is never written: a run's overrides live here only."""
    text = effective_yaml(params)
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)
    return True
