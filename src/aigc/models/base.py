"""Model families: what a trainer may know about a model, and the registry that names them.

A family is a name, a config (a pydantic model in `aigc.models.configs`), an `nn.Module`
class built from that config, the objective that trains it (`aigc.models.objective`: its
optimizers and losses; next-token prediction by default) and, for image families, a sampler.
The text families:

    model = build_model(GPTConfig(vocab_size=512, block_size=64), seed=0)
    logits, loss = model(idx, targets)          # the only call a trainer makes
    ids = generate(model, prompt, max_new_tokens=100, temperature=0.8, top_k=50, generator=g)

The contract every module follows:

- `__init__(config)`, and `model.config` is that config;
- `forward(idx (B, T) LongTensor, targets (B, T) LongTensor | None) -> (logits (B, T, V),
  loss | None)`, the loss being mean cross-entropy over targets that are not `IGNORE_INDEX`;
- `config.block_size`: the longest context `forward` accepts.

Image families (`dcgan`, `vae`, `ddpm`) take `(pixels (B, C, H, W) in [-1, 1], labels (B,))`
batches through their objective, and `family.sampler(model, labels, seed) -> uint8 (N, H, W, C)`.
A trainer uses only the registry, the config and the objective, so adding a family means adding
its config to `aigc.models.configs` and a module that defines `FAMILY = ModelFamily(...)`,
listed in `_BUILTIN_FAMILIES` below (or passed to `register_family`); no trainer changes.
The built-in families are imported lazily, when first asked for, so importing this module
does no work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 (the usual name)
from torch import nn

from aigc.models.configs import DEFAULT_FAMILY, FamilyConfig
from aigc.models.objective import NEXT_TOKEN, Objective
from aigc.references import Catalog

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
    "hf": "aigc.models.hf:FAMILY",
    "dcgan": "aigc.models.dcgan:FAMILY",
    "vae": "aigc.models.vae:FAMILY",
    "ddpm": "aigc.models.ddpm:FAMILY",
}
_FAMILIES: Catalog[ModelFamily] = Catalog("model family", _BUILTIN_FAMILIES, lambda f: f.name)


@dataclass(frozen=True)
class ModelFamily:
    """A kind of model: its name, config class, module class, objective and sampler."""

    name: str
    config_class: type[FamilyConfig]
    model_class: type[nn.Module]
    objective: Objective = NEXT_TOKEN
    # Image families: sample(model, labels (N,), seed, **options) -> uint8 (N, H, W, C).
    sampler: Callable[..., torch.Tensor] | None = None
    # initialize(model, config): a fresh model's starting weights before training, where they
    # are not a random initialisation (hf: the pretrained base's, plus LoRA adapters).
    initialize: Callable[[nn.Module, FamilyConfig], nn.Module] | None = None
    # finalize(model): the trained model as it is registered (hf: LoRA merged into weights).
    finalize: Callable[[nn.Module], nn.Module] | None = None
    # to_hugging_face(model) -> transformers.PreTrainedModel (`aigc export`); None: no
    # Hugging Face equivalent (LSTM).
    to_hugging_face: Callable[[nn.Module], nn.Module] | None = None

    def build(self, config: FamilyConfig) -> nn.Module:
        missing = config.unset_data_fields()
        if missing:
            raise ValueError(f"{self.name}: config {missing} not set (the training data sets it)")
        return self.model_class(config)


def register_family(family: ModelFamily) -> ModelFamily:
    """Make `family` available by name; re-registering the same family is harmless."""
    if not issubclass(family.config_class, FamilyConfig):
        raise TypeError(f"family {family.name!r}: config_class must derive FamilyConfig")
    return _FAMILIES.register(family)


def family_names() -> list[str]:
    return sorted(_FAMILIES.names())


def get_family(name: str) -> ModelFamily:
    found = _FAMILIES.find(name)
    if found is None:
        raise KeyError(
            f"unknown model family {name!r}; known: {family_names()}. "
            "Register a new one with aigc.models.register_family."
        )
    return found


def build_model(
    config: FamilyConfig | dict, seed: int | None = None, initialize: bool = False
) -> nn.Module:
    """A freshly initialised model of `config.family` (a config, or a mapping checked as one).

    With `seed`, initialisation uses that seed without disturbing the global RNG, so the same
    (config, seed) always gives the same weights. With `initialize`, the family's own starting
    weights are loaded (a pretrained base), as a training run starts from them; without, the
    module is only built, as it is before a saved state is loaded into it.
    """
    if isinstance(config, dict):
        family = get_family(config.get("family", DEFAULT_FAMILY))
        config = family.config_class.model_validate({**config, "family": family.name})
    family = get_family(config.family)

    def built() -> nn.Module:
        model = family.build(config)
        if initialize and family.initialize is not None:
            model = family.initialize(model, config)
        return model

    if seed is None:
        return built()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return built()


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
    use_cache: bool = True,
    row_seeds: Sequence[int] | None = None,
) -> torch.Tensor:
    """Continue `prompt_ids` (B, T) by sampling up to `max_new_tokens` tokens; returns (B, T+N).

    The context is cropped to `config.block_size`. A family with a `step(idx, state) ->
    (last logits (B, V), state)` method (GPT: a key/value cache; LSTM: its hidden state) is fed
    one new token per step while the context fits in block_size, and re-started from the
    cropped context once it does not; the tokens are those of re-running the whole context
    every step (`use_cache=False`, the path of a family without `step`), only cheaper. The
    randomness comes only from `generator`, so the same seed gives the same text; with
    `row_seeds` (one per row) each row draws from its own stream instead, so a row samples the
    same tokens whatever else is in the batch.
    `temperature=0` is greedy decoding. With `eos_id`, a row that has produced it keeps
    producing it, and sampling stops once every row has.
    """
    if prompt_ids.dim() == 1:
        prompt_ids = prompt_ids.unsqueeze(0)
    if prompt_ids.dim() != 2 or prompt_ids.size(1) == 0:
        raise ValueError(f"prompt_ids must be (B, T) with T >= 1, got {tuple(prompt_ids.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature={temperature} must be >= 0 (0 means greedy)")
    module = unwrap_model(model)
    block_size = module.config.block_size
    stepper = getattr(module, "step", None) if use_cache else None
    device = next(model.parameters()).device
    idx = prompt_ids.to(device)  # (B, T)
    finished = torch.zeros(idx.size(0), dtype=torch.bool, device=device)  # (B,)
    was_training = model.training
    model.eval()
    state, cached = None, 0  # the family's state, and how many positions it holds
    uniforms = None
    if row_seeds is not None:
        if len(row_seeds) != idx.size(0):
            raise ValueError(f"{len(row_seeds)} row_seeds for {idx.size(0)} rows")
        uniforms = torch.stack(  # (B, N): row b's draw for step t is uniforms[b, t]
            [torch.rand(max_new_tokens, generator=_seeded(seed)) for seed in row_seeds]
        ).to(device)
    try:
        for step in range(max_new_tokens):
            if stepper is None:
                logits = model(idx[:, -block_size:])[0][:, -1, :]  # (B, V)
            elif state is not None and cached < block_size:
                logits, state = stepper(idx[:, -1:], state)  # (B, V): one new position
                cached += 1
            else:  # the first step, or the context outgrew block_size: start again, cropped
                context = idx[:, -block_size:]  # (B, min(T, block_size))
                logits, state = stepper(context)
                cached = context.size(1)
            draws = None if uniforms is None else uniforms[:, step]  # (B,)
            next_id = _sample(logits.float(), temperature, top_k, generator, draws)  # (B, 1)
            if eos_id is not None:
                next_id = next_id.masked_fill(finished.unsqueeze(1), eos_id)
                finished |= next_id.squeeze(1) == eos_id
            idx = torch.cat([idx, next_id], dim=1)  # (B, T+1)
            if eos_id is not None and bool(finished.all()):
                break
    finally:
        model.train(was_training)
    return idx


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def _sample(
    logits: torch.Tensor,
    temperature: float,
    top_k: int | None,
    generator: torch.Generator | None,
    draws: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token id per row of (B, V) logits: greedy at temperature 0, else top-k sampling,
    from `generator`, or by inverting each row's CDF at its own uniform draw (B,)."""
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, [-1]]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    if draws is None:
        return torch.multinomial(probs, 1, generator=generator)  # (B, 1)
    below = probs.cumsum(dim=-1) < draws.unsqueeze(1)  # (B, V): CDF still short of the draw
    return below.sum(dim=-1, keepdim=True).clamp(max=probs.size(-1) - 1)  # (B, 1)
