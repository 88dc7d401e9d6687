"""What one optimizer step of a family does: its optimizers, and the loss each one minimises.

    objective = get_family(config.family).objective
    optimizers = objective.make_optimizers(module, Rates(lr, betas, weight_decay))  # the loop's
    loss = objective.loss("model", model, batch, step)              # a scalar to backpropagate

The training loop (`aigc.train.loop`) owns everything around it (budgets, gradient
accumulation, `no_sync`, clipping, the learning-rate schedule, RNG state, exact resume, hooks)
and runs the optimizers one after the other, in the order `make_optimizers` returns them: for
each, it zeroes the gradients, backpropagates that optimizer's loss over the step's
micro-batches and steps it. A GAN's objective returns {"discriminator", "generator"}; text's
returns one AdamW. Losses go through `model(...)` (never a submodule), so a
DistributedDataParallel wrapper sees every forward pass; an objective whose phases leave some
parameters without gradients asks for `find_unused_parameters` in `ddp_options`.

A parameter group may carry `base_lr`: its rate is then `base_lr` times the schedule's factor
(`learning_rate(step) / loop.lr`), so a family with its own rates (Adam at 2e-4 for a GAN)
still follows the loop's warmup and decay; groups without it take the schedule's rate as is.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Rates:
    """The three numbers an optimizer takes from the loop (train.loop): no import of it."""

    lr: float
    betas: tuple[float, float]
    weight_decay: float


class Objective:
    """The next-token objective of the text families: one AdamW, mean cross-entropy."""

    unit = "tokens"  # what `count` counts; budgets (`max_tokens`) and throughput use it
    ddp_options: dict[str, Any] = {}  # noqa: RUF012 (read-only)
    loss_phase = "model"  # the optimizer whose loss is reported as the step's `loss`

    def make_optimizers(self, module: nn.Module, loop: Rates) -> dict[str, Any]:
        return {"model": make_optimizer(module, loop)}

    def loss(self, phase: str, model: nn.Module, batch: tuple, step: int) -> torch.Tensor:
        x, y = batch
        return model(x, y)[1]

    def count(self, batch: tuple) -> int:
        return batch[0].numel()

    def validation_loss(self, model: nn.Module, batch: tuple) -> tuple[float, int]:
        """(loss summed over the batch's units, units): the loop averages over batches."""
        x, y = batch
        return float(model(x, y)[1]) * y.numel(), y.numel()


NEXT_TOKEN = Objective()


def make_optimizer(
    module: nn.Module | Iterable[nn.Parameter], rates: Rates, own: bool = False
) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D+ parameters only (matrices and embeddings; biases and
    norm gains are not decayed, as shrinking them toward zero buys nothing). With `own` (a
    family's own rates, not the loop's), the groups carry `rates.lr` as `base_lr`."""
    parameters = module.parameters() if isinstance(module, nn.Module) else module
    parameters = [parameter for parameter in parameters if parameter.requires_grad]
    extra = {"base_lr": rates.lr} if own else {}
    groups = [
        {"params": [p for p in parameters if p.dim() >= 2], "weight_decay": rates.weight_decay}
        | extra,
        {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0} | extra,
    ]
    return torch.optim.AdamW(groups, lr=rates.lr, betas=rates.betas)
