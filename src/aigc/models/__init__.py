"""Generative models, grouped in families a trainer reaches only through the registry.

`configs` holds each family's config (the schema of `train.model`), `base` the registry
(`build_model(config)`), the forward contract and the shared `generate`; `gpt` and `lstm` are
the text families; `checkpoint` saves a model with its config so it reloads without the params
file. Families are imported on first use.
"""

# Attributes resolve on first use, so importing aigc.models.configs (the schema, read by
# every command) does not import torch.
_EXPORTS = {
    "ModelFamily": "aigc.models.base",
    "build_model": "aigc.models.base",
    "family_names": "aigc.models.base",
    "generate": "aigc.models.base",
    "get_family": "aigc.models.base",
    "register_family": "aigc.models.base",
    "unwrap_model": "aigc.models.base",
    "load_model": "aigc.models.checkpoint",
    "save_checkpoint": "aigc.models.checkpoint",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aigc.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
