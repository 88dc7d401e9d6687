"""Typed configuration: params.yaml, one section per stage, checked at the edge.

The pydantic sections of this package are the only definition of every setting and its
default; params.yaml holds a project's own choices on top of them. `load_params(path,
overrides)` reads the file, layers the params overlay that AIGC_PARAMS_OVERLAY names, if any
(a profile sets it: `aigc --profile stack`), applies `--set section.key=value` overrides and
validates everything into frozen models; an unknown key or a wrong type raises `ConfigError`
naming the key. The user's file is never written: `write_effective_params` records a run's
whole configuration in a generated file that DVC's stages read (`ProjectPaths.effective_params`).

Overrides address list items by index or, where items have a `name`, by name:
`--set collect.sources.inbox.path=/srv/inbox`.

One module per concern, imported in this order: base (Section, ConfigError), the sections
(data, train, registry, image), params (the Params root), loading. Import the names from
here: `from aigc.config import Params, load_params`.
"""

from __future__ import annotations

from aigc.config.base import (
    ConfigError,
    Section,
    is_uri,
)
from aigc.config.data import (
    HTTP_SCHEMES,
    BuiltinSource,
    CleanParams,
    CollectParams,
    FolderSource,
    GarbledRule,
    HttpSource,
    LabelParams,
    LengthRule,
    NearDuplicateRule,
    NormalizeRule,
    Rule,
    Source,
    SourceBase,
    SplitFraction,
    SplitParams,
    StripMarkupRule,
    TopicRules,
    VersionParams,
    http_origin,
    unique_source_names,
)
from aigc.config.image import (
    Cifar10Source,
    DigitsSource,
    ImageClassifierParams,
    ImageCleanParams,
    ImageCollectParams,
    ImageEvaluateParams,
    ImageFolderSource,
    ImageLabelParams,
    ImageNearDuplicateRule,
    ImageParams,
    ImagePromotionPolicy,
    ImageRegistryParams,
    ImageSource,
    ImageSplitParams,
    ImageTrainParams,
    ImageVersionParams,
)
from aigc.config.loading import (
    DEFAULT_PARAMS_FILE,
    EFFECTIVE_HEADER,
    PARAMS_OVERLAY_VARIABLE,
    apply_override,
    effective_yaml,
    load_params,
    parse_override,
    read_overlay,
    read_params_data,
    write_effective_params,
)
from aigc.config.params import (
    PLACEMENT_SETTINGS,
    Params,
)
from aigc.config.registry import (
    Direction,
    GuardKind,
    GuardRule,
    PromotionPolicy,
    RegistryParams,
    RunParams,
    TrackingParams,
)
from aigc.config.train import (
    EvaluateParams,
    LoopParams,
    RayParams,
    TokenizerParams,
    TrainParams,
)

__all__ = [
    "BuiltinSource",
    "Cifar10Source",
    "CleanParams",
    "CollectParams",
    "ConfigError",
    "DEFAULT_PARAMS_FILE",
    "DigitsSource",
    "Direction",
    "EFFECTIVE_HEADER",
    "EvaluateParams",
    "FolderSource",
    "GarbledRule",
    "GuardKind",
    "GuardRule",
    "HTTP_SCHEMES",
    "HttpSource",
    "ImageClassifierParams",
    "ImageCleanParams",
    "ImageCollectParams",
    "ImageEvaluateParams",
    "ImageFolderSource",
    "ImageLabelParams",
    "ImageNearDuplicateRule",
    "ImageParams",
    "ImagePromotionPolicy",
    "ImageRegistryParams",
    "ImageSource",
    "ImageSplitParams",
    "ImageTrainParams",
    "ImageVersionParams",
    "LabelParams",
    "LengthRule",
    "LoopParams",
    "NearDuplicateRule",
    "NormalizeRule",
    "PARAMS_OVERLAY_VARIABLE",
    "PLACEMENT_SETTINGS",
    "Params",
    "PromotionPolicy",
    "RayParams",
    "RegistryParams",
    "Rule",
    "RunParams",
    "Section",
    "Source",
    "SourceBase",
    "SplitFraction",
    "SplitParams",
    "StripMarkupRule",
    "TokenizerParams",
    "TopicRules",
    "TrackingParams",
    "TrainParams",
    "VersionParams",
    "apply_override",
    "effective_yaml",
    "http_origin",
    "is_uri",
    "load_params",
    "parse_override",
    "read_overlay",
    "read_params_data",
    "unique_source_names",
    "write_effective_params",
]
