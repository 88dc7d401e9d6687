"""Model checkpoints that carry their own family name and config.

Usage:

    save_checkpoint("model.pt", model, model.config, extra={"tokenizer": tok.to_json()})
    model, family, config, extra = load_model("model.pt")

A checkpoint is a `torch.save`d dict of plain values and tensors:
`{"format", "version", "family", "config" (dict), "model" (state_dict), "extra" (dict)}`, so it
loads without the params file that produced it, and loads with `weights_only=True` (no pickled
code runs). `extra` must hold only plain values (str, int, float, bool, None, lists, dicts,
tensors): put the tokenizer JSON, the data version and the step there.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aigc.models.base import get_family, unwrap_model
from aigc.models.configs import ModelConfigBase

CHECKPOINT_FORMAT = "aigc-model-checkpoint"
CHECKPOINT_VERSION = 1
MODEL_FILE = "model.pt"  # the checkpoint's name in a generator's bundle folder, text or image


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    config: ModelConfigBase,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write `model`'s weights with its family and config to `path`, atomically."""
    family = get_family(config.family).name  # fail now on a family nobody can rebuild
    # Weights saved from a compiled or DDP-wrapped model load into a plain one.
    state = {key: value.detach().cpu() for key, value in unwrap_model(model).state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "family": family,
        "config": config.model_dump(mode="json"),
        "model": state,
        "extra": dict(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A crash mid-write must not leave a truncated file where a good checkpoint was.
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(payload, temporary)
    os.replace(temporary, path)


def load_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, str, Any, dict[str, Any]]:
    """(model in eval mode, family name, config, extra) from a checkpoint file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several kinds; the fix is the same
        raise ValueError(
            f"{path} is not a loadable aigc checkpoint ({error}); was it written by "
            "save_checkpoint?"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not an aigc model checkpoint; write it with save_checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {payload.get('version')!r} is not {CHECKPOINT_VERSION}"
        )
    family = get_family(payload["family"])
    config = family.config_class.model_validate({**payload["config"], "family": family.name})
    model = family.build(config)
    model.load_state_dict(payload["model"])
    model.to(map_location)
    model.eval()
    return model, family.name, config, payload["extra"]
