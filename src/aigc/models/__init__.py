"""Generative models, grouped in families a trainer reaches only through the registry.

`configs` holds each family's config (the schema of `train.model`), `base` the registry
(`build_model(config)`), the forward contract and the shared `generate`; `gpt` and `lstm` are
the text families; `checkpoint` saves a model with its config so it reloads without the params
file. Families are imported on first use.
"""

from aigc.models.base import (
    ModelFamily,
    build_model,
    family_names,
    generate,
    get_family,
    register_family,
    unwrap_model,
)
from aigc.models.checkpoint import load_model, save_checkpoint

__all__ = [
    "ModelFamily",
    "build_model",
    "family_names",
    "generate",
    "get_family",
    "load_model",
    "register_family",
    "save_checkpoint",
    "unwrap_model",
]
