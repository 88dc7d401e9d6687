"""The training loop: plain PyTorch, one process, hooks for whatever wraps it.

Usage:

    result = train_loop(model, train_loader, val_loader, params.train.loop, seed=0)

The loop trains any family of `aigc.models` on batches that are tuples of tensors (text:
`(x, y)` token blocks; images: `(pixels, labels)`): the family's `Objective`
(`aigc.models.objective`) names its optimizers and the loss of each, and the loop runs them
in turn every step. It knows nothing of Ray, MLflow or files. A wrapper (the Ray TorchTrainer
worker function) passes `LoopHooks`: `on_step` / `on_eval` to report metrics,
`save_checkpoint` to persist a state, `agree_to_stop` to make every worker stop together; and
passes `resume_state` to continue from a saved state. The loop calls every hook the same
number of times in every process; deciding that only rank 0 writes is the wrapper's business.
If the wrapper hands in a DistributedDataParallel model, gradient accumulation skips the
gradient all-reduce on all but the last micro-batch (`no_sync`).

Decisions:

- Optimizers are the family's (text: AdamW with decoupled weight decay on matrices only,
  `make_optimizer`); several optimizers step one after the other, each on its own loss, each
  with its parameters' gradients clipped on their own.
- Learning rate: linear warmup over `warmup_steps`, then cosine decay to `min_lr` at
  `lr_decay_steps` (default `max_steps`), then flat. It is a pure function of the step, so a
  resumed run needs no scheduler state. With neither set, the rate stays at `lr` after warmup.
- Budgets (`max_steps`, `max_tokens`, `max_minutes`; at least one) are checked after each
  optimizer step: training stops after the first step that reaches any of them, so the token
  budget may be overshot by less than one step's tokens. Tokens are the units the objective
  counts (`Objective.unit`: input tokens for text, images for image families) that this
  process has trained on.
- Determinism: with the same model weights, data, config and seed, two CPU runs end with
  identical weights, and a run resumed from the state saved at step k ends identical to one
  never interrupted. The sources of randomness are the global torch RNG (dropout; seeded from
  `seed`, saved in the state; it also draws a GAN's noise and a diffusion model's time
  steps) and the sampler's order. Shuffle with a sampler whose order is a
  function of its epoch (`EpochShuffleSampler`, or DistributedSampler under Ray): the loop calls
  `set_epoch` on it and, on resume, skips the batches of the current epoch already trained on.
  Data-loader iterators are created outside the training RNG stream, and evaluation runs on
  a fixed stream of its own, so evaluation and epoch boundaries do not move it.
- On CUDA, `bf16=True` runs forward passes under bfloat16 autocast (no loss scaling needed)
  and `compile=True` wraps the model in `torch.compile`; both are ignored on CPU.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from aigc.config import LoopParams
from aigc.models.base import get_family, unwrap_model
from aigc.models.objective import Objective, Rates, make_optimizer

__all__ = [
    "LoopHooks",
    "LoopResult",
    "evaluate",
    "learning_rate",
    "make_optimizer",
    "rates",
    "train_loop",
]

STATE_VERSION = 2  # 2: one optimizer state per name


@dataclass
class LoopHooks:
    """Callbacks from the loop; each is optional. All are called in every process alike.

    The state given to `save_checkpoint` refers to live tensors: serialize it (torch.save)
    or deep-copy it before returning.
    """

    on_step: Callable[[dict[str, float]], None] | None = None
    on_eval: Callable[[dict[str, float]], None] | None = None
    save_checkpoint: Callable[[dict[str, Any]], None] | None = None
    # Given this process's wish to stop, return the decision all processes share
    # (under DDP: an all-reduce). Without it, each process decides alone.
    agree_to_stop: Callable[[bool], bool] | None = None


@dataclass
class LoopResult:
    steps: int
    tokens_seen: int
    stop_reason: str  # "max_steps" | "max_tokens" | "max_minutes"
    elapsed_seconds: float
    final_train_loss: float
    final_val_loss: float | None
    evaluations: list[dict[str, float]] = field(default_factory=list)


def rates(config: LoopParams) -> Rates:
    """The loop's optimizer numbers, as the families' objectives take them."""
    return Rates(config.lr, config.betas, config.weight_decay)


def learning_rate(step: int, config: LoopParams) -> float:
    """The rate for optimizer step `step` (0-based): warmup, cosine decay, then `min_lr`."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    decay_steps = config.lr_decay_steps or config.max_steps
    if decay_steps is None:
        return config.lr
    if step >= decay_steps:
        return config.min_lr
    progress = (step - config.warmup_steps) / max(1, decay_steps - config.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return config.min_lr + cosine * (config.lr - config.min_lr)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    max_batches: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    objective: Objective | None = None,
) -> dict[str, float]:
    """Mean validation loss over the first `max_batches` batches, weighted by the objective's
    units per batch (tokens for text). Randomness (a diffusion model's noise) comes from a
    fixed stream of its own, so every evaluation sees the same draws and the training stream
    does not move."""
    objective = objective or get_family(unwrap_model(model).config.family).objective
    was_training = model.training
    model.eval()
    total_loss, total_units = 0.0, 0
    forked = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=forked):
            torch.manual_seed(0)
            for index, batch in enumerate(_iterate(loader)):
                if index >= max_batches:
                    break
                batch = _to_device(batch, device)
                with autocast():
                    loss_sum, units = objective.validation_loss(model, batch)
                total_loss += loss_sum
                total_units += units
    finally:
        model.train(was_training)
    if total_units == 0:
        raise ValueError("the validation loader yielded no batches; give it at least one")
    return {"val_loss": total_loss / total_units, "val_tokens": float(total_units)}


def train_loop(
    model: nn.Module,
    train_loader: Any,
    val_loader: Any | None,
    config: LoopParams,
    hooks: LoopHooks | None = None,
    resume_state: dict[str, Any] | None = None,
    *,
    seed: int,
    device: str = "cpu",
) -> LoopResult:
    """Train `model` in place until a budget in `config` is reached; see the module docstring.

    `train_loader` and `val_loader` are iterables of batches, tuples of tensors (DataLoaders,
    typically); `resume_state` is a state previously given to `hooks.save_checkpoint`; `seed`
    seeds the training RNG stream (dropout, noise); `device` is "cpu" or "cuda[:N]".
    """
    hooks = hooks or LoopHooks()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was asked for but no CUDA device is visible")
    module = unwrap_model(model)
    objective = get_family(module.config.family).objective
    model.to(device)
    optimizers = objective.make_optimizers(module, rates(config))
    on_cuda = device.type == "cuda"
    forward_model = torch.compile(model) if config.compile and on_cuda else model

    def autocast() -> contextlib.AbstractContextManager:
        if on_cuda and config.bf16:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    step, tokens_seen, epoch, batches_done, elapsed_before = 0, 0, 0, 0, 0.0
    torch.manual_seed(seed)
    if resume_state is not None:
        step, tokens_seen, epoch, batches_done, elapsed_before = _restore(
            resume_state, module, optimizers
        )
    batches = _train_batches(train_loader, epoch, batches_done)
    started, tokens_at_start = time.monotonic(), tokens_seen
    evaluations: list[dict[str, float]] = []
    train_loss = math.nan
    stop_reason = ""
    model.train()

    while not stop_reason:
        lr = learning_rate(step, config)
        micro_batches = []
        for _ in range(config.grad_accumulation):
            epoch, batches_done, batch = next(batches)
            micro_batches.append(_to_device(batch, device))
            tokens_seen += objective.count(batch)
        losses, grad_norms = {}, {}
        for phase, optimizer in optimizers.items():
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * lr / config.lr if "base_lr" in group else lr
            optimizer.zero_grad(set_to_none=True)
            phase_loss = torch.zeros((), device=device)
            for micro, batch in enumerate(micro_batches):
                last_micro = micro == len(micro_batches) - 1
                sync = contextlib.nullcontext() if last_micro else _no_sync(model)
                with sync:
                    with autocast():
                        loss = objective.loss(phase, forward_model, batch, step)
                    (loss / config.grad_accumulation).backward()
                phase_loss += loss.detach() / config.grad_accumulation  # no host sync per micro
            # With clipping off, an infinite threshold still measures the norm, a useful metric.
            max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
            parameters = [p for group in optimizer.param_groups for p in group["params"]]
            grad_norms[phase] = float(torch.nn.utils.clip_grad_norm_(parameters, max_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses[phase] = float(phase_loss)
        step += 1
        train_loss = losses[objective.loss_phase]
        elapsed = elapsed_before + time.monotonic() - started

        stop_reason = _budget_reached(config, step, tokens_seen, elapsed)
        if hooks.agree_to_stop is not None:
            agreed = hooks.agree_to_stop(bool(stop_reason))
            stop_reason = (stop_reason or "agreed") if agreed else ""
        if hooks.on_step is not None:
            # With several optimizers, each one's loss and gradient norm as well.
            per_phase = {} if len(optimizers) == 1 else _per_phase(losses, grad_norms)
            hooks.on_step(
                {
                    "step": float(step),
                    "loss": train_loss,
                    "lr": lr,
                    "grad_norm": grad_norms[objective.loss_phase],
                    "tokens_seen": float(tokens_seen),
                    "epoch": float(epoch),
                    "elapsed_seconds": elapsed,
                    "tokens_per_second": (tokens_seen - tokens_at_start)
                    / max(elapsed - elapsed_before, 1e-9),
                    "peak_memory_mb": _peak_memory_mb(device),
                    **per_phase,
                }
            )
        if val_loader is not None and (
            stop_reason or (config.eval_every and step % config.eval_every == 0)
        ):
            metrics = {"step": float(step), "tokens_seen": float(tokens_seen)}
            metrics |= evaluate(
                forward_model, val_loader, config.eval_batches, device, autocast, objective
            )
            evaluations.append(metrics)
            if hooks.on_eval is not None:
                hooks.on_eval(metrics)
        if hooks.save_checkpoint is not None and (
            stop_reason or (config.checkpoint_every and step % config.checkpoint_every == 0)
        ):
            hooks.save_checkpoint(
                _state(module, optimizers, step, tokens_seen, epoch, batches_done, elapsed)
            )

    return LoopResult(
        steps=step,
        tokens_seen=tokens_seen,
        stop_reason=stop_reason,
        elapsed_seconds=elapsed_before + time.monotonic() - started,
        final_train_loss=train_loss,
        final_val_loss=evaluations[-1]["val_loss"] if evaluations else None,
        evaluations=evaluations,
    )


def _per_phase(losses: dict[str, float], grad_norms: dict[str, float]) -> dict[str, float]:
    return {f"loss_{phase}": loss for phase, loss in losses.items()} | {
        f"grad_norm_{phase}": norm for phase, norm in grad_norms.items()
    }


def _to_device(batch: Any, device: torch.device) -> tuple:
    return tuple(tensor.to(device, non_blocking=True) for tensor in batch)


def _peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocations on a GPU, resident set size on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _budget_reached(config: LoopParams, step: int, tokens_seen: int, elapsed: float) -> str:
    if config.max_steps is not None and step >= config.max_steps:
        return "max_steps"
    if config.max_tokens is not None and tokens_seen >= config.max_tokens:
        return "max_tokens"
    if config.max_minutes is not None and elapsed >= 60 * config.max_minutes:
        return "max_minutes"
    return ""


def _no_sync(model: nn.Module) -> contextlib.AbstractContextManager:
    no_sync = getattr(model, "no_sync", None)
    return no_sync() if callable(no_sync) else contextlib.nullcontext()


def _iterate(loader: Any) -> Iterator[Any]:
    # Creating a DataLoader iterator draws a seed from the global RNG; doing it in a fork
    # keeps the training RNG stream (dropout) independent of evaluations and epoch ends.
    with torch.random.fork_rng(devices=[]):
        iterator = iter(loader)
    return iterator


def _train_batches(loader: Any, epoch: int, skip: int) -> Iterator[tuple[int, int, Any]]:
    """(epoch, batches done in that epoch, batch) forever, starting `skip` batches into `epoch`."""
    while True:
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        done = 0
        for done, batch in enumerate(_iterate(loader), start=1):
            if done > skip:
                yield epoch, done, batch
        if done == 0:
            raise ValueError("the training loader yielded no batches; give it at least one")
        epoch, skip = epoch + 1, 0


def _state(
    module: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    step: int,
    tokens_seen: int,
    epoch: int,
    batches_done: int,
    elapsed: float,
) -> dict[str, Any]:
    rng = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    return {
        "version": STATE_VERSION,
        "model": module.state_dict(),
        "optimizers": {name: optimizer.state_dict() for name, optimizer in optimizers.items()},
        "rng": rng,
        "step": step,
        "tokens_seen": tokens_seen,
        "epoch": epoch,
        "batches_done_in_epoch": batches_done,
        "elapsed_seconds": elapsed,
    }


def _restore(
    state: dict[str, Any], module: nn.Module, optimizers: dict[str, torch.optim.Optimizer]
) -> tuple[int, int, int, int, float]:
    if state.get("version") != STATE_VERSION:
        raise ValueError(
            f"resume state version {state.get('version')!r} is not {STATE_VERSION}; "
            "it was saved by another version of the training loop"
        )
    module.load_state_dict(state["model"])
    if state["optimizers"].keys() != optimizers.keys():
        raise ValueError(
            f"the resume state holds optimizers {sorted(state['optimizers'])}, the family "
            f"trains with {sorted(optimizers)}; it was saved for another family"
        )
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(state["optimizers"][name])
    # RNG states must be CPU byte tensors, whatever map_location the state was loaded with.
    torch.set_rng_state(state["rng"]["torch"].cpu())
    if "cuda" in state["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([rng.cpu() for rng in state["rng"]["cuda"]])
    return (
        state["step"],
        state["tokens_seen"],
        state["epoch"],
        state["batches_done_in_epoch"],
        state["elapsed_seconds"],
    )
