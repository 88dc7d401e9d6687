"""Model families: what a trainer may know about a model, and the registry that names them.

A family is a name, a config dataclass and an `nn.Module` class built from that config:

    model = build_model("gpt", {"vocab_size": 512, "block_size": 64, ...}, seed=0)
    logits, loss = model(idx, targets)          # the only call a trainer makes
    ids = generate(model, prompt, max_new_tokens=100, temperature=0.8, top_k=50, generator=g)

The contract every module follows:

- `__init__(config)`, and `model.config` is that config;
- `forward(idx (B, T) LongTensor, targets (B, T) LongTensor | None) -> (logits (B, T, V),
  loss | None)`, the loss being mean cross-entropy over targets that are not `IGNORE_INDEX`;
- `config.block_size`: the longest context `forward` accepts.

A trainer uses only the registry, the config dict and forward/loss, so adding a family means
adding a module that defines `FAMILY = ModelFamily(...)` and either listing it in
`_BUILTIN_FAMILIES` below or calling `register_family(FAMILY)`; no trainer changes. The built-in
families are imported lazily, when first asked for, so importing this module does no work.
"""

from __future__ import annotations

import dataclasses
import importlib
import types
import typing
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

# Targets equal to this are left out of the loss (PyTorch's default ignore index): padding.
IGNORE_INDEX = -100


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of (B, T, V) logits against (B, T) targets; IGNORE_INDEX skipped.

    Every family's forward uses it, so losses are comparable across families."""
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)), targets.reshape(-1), ignore_index=IGNORE_INDEX
    )


# name -> "module:attribute" holding the family; imported on first use.
_BUILTIN_FAMILIES: dict[str, str] = {
    "gpt": "aigc.models.gpt:FAMILY",
    "lstm": "aigc.models.lstm:FAMILY",
}
_REGISTRY: dict[str, ModelFamily] = {}


@dataclass(frozen=True)
class ModelFamily:
    """A kind of model: its name, its config dataclass and the module class it configures."""

    name: str
    config_class: type
    model_class: type[nn.Module]

    def config_from_dict(self, values: dict[str, Any]) -> Any:
        """The config dataclass from a plain dict, each key and type checked (nanoGPT-style)."""
        return config_from_dict(self.config_class, values, self.name)

    def build(self, config: Any) -> nn.Module:
        return self.model_class(config)


def register_family(family: ModelFamily) -> ModelFamily:
    """Make `family` available by name; re-registering the same family is harmless."""
    if not dataclasses.is_dataclass(family.config_class):
        raise TypeError(f"family {family.name!r}: config_class must be a dataclass")
    existing = _REGISTRY.get(family.name)
    if existing is not None and existing != family:
        raise ValueError(f"a different model family is already registered as {family.name!r}")
    _REGISTRY[family.name] = family
    return family


def family_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_BUILTIN_FAMILIES))


def get_family(name: str) -> ModelFamily:
    if name not in _REGISTRY and name in _BUILTIN_FAMILIES:
        module_name, attribute = _BUILTIN_FAMILIES[name].split(":")
        register_family(getattr(importlib.import_module(module_name), attribute))
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown model family {name!r}; known: {family_names()}. "
            "Register a new one with aigc.models.register_family."
        ) from None


def build_model(family_name: str, config: dict[str, Any], seed: int | None = None) -> nn.Module:
    """A freshly initialised model of `family_name` configured by `config`.

    With `seed`, initialisation uses that seed without disturbing the global RNG, so the same
    (family, config, seed) always gives the same weights.
    """
    family = get_family(family_name)
    config_object = family.config_from_dict(config)
    if seed is None:
        return family.build(config_object)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return family.build(config_object)


def config_from_dict(config_class: type, values: dict[str, Any], family_name: str = "") -> Any:
    """Build `config_class` from `values`, naming the bad key and the fix on any mistake."""
    where = f"model family {family_name!r}" if family_name else config_class.__name__
    fields = {field.name: field for field in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown config keys {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(config_class)
    for key, value in values.items():
        expected = hints[key]
        if not _value_matches(value, expected):
            raise TypeError(
                f"{where}: config key {key!r} must be {_type_name(expected)}, "
                f"got {value!r} ({type(value).__name__})"
            )
    return config_class(**values)


def _value_matches(value: Any, expected: Any) -> bool:
    if expected is Any:
        return True
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return any(_value_matches(value, option) for option in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected is float:  # an int is a fine float (lr: 1 in YAML)
        return isinstance(value, int | float) and not isinstance(value, bool)
    if origin is not None:
        return isinstance(value, origin)
    return isinstance(value, expected)


def _type_name(expected: Any) -> str:
    return getattr(expected, "__name__", str(expected))


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-dict form of a config dataclass, as stored in checkpoints."""
    return dataclasses.asdict(config)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module itself, from inside torch.compile's and DistributedDataParallel's wrappers:
    the one whose state_dict keys match a freshly built model."""
    while True:
        if hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


@torch.no_grad()
def generate(
    model: nn.Module,
    prompt_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
    eos_id: int | None = None,
) -> torch.Tensor:
    """Continue `prompt_ids` (B, T) by sampling up to `max_new_tokens` tokens; returns (B, T+N).

    Works for any family through `forward`: the context is cropped to `config.block_size` and
    the whole context is re-run each step (simple, and cheap at the sizes we sample). The
    randomness comes only from `generator` (on the model's device), so the same generator seed
    gives the same text. `temperature=0` is greedy decoding. With `eos_id`, a row that has
    produced it keeps producing it, and sampling stops once every row has.
    """
    if prompt_ids.dim() == 1:
        prompt_ids = prompt_ids.unsqueeze(0)
    if prompt_ids.dim() != 2 or prompt_ids.size(1) == 0:
        raise ValueError(f"prompt_ids must be (B, T) with T >= 1, got {tuple(prompt_ids.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    block_size = unwrap_model(model).config.block_size
    device = next(model.parameters()).device
    idx = prompt_ids.to(device)  # (B, T)
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=device)  # (B,)
    was_training = model.training
    model.eval()
    try:
        for _ in range(max_new_tokens):
            context = idx[:, -block_size:]  # (B, min(T, block_size))
            logits, _ = model(context)
            logits = logits[:, -1, :].float()  # (B, V)
            if temperature == 0:
                next_id = logits.argmax(dim=-1, keepdim=True)  # (B, 1)
            else:
                logits = logits / temperature
                if top_k is not None:
                    kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, dim=-1)
                next_id = torch.multinomial(probs, 1, generator=generator)  # (B, 1)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished.unsqueeze(1), eos_id)
                finished |= next_id.squeeze(1) == eos_id
            idx = torch.cat([idx, next_id], dim=1)  # (B, T+1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return idx
