"""The training loop: plain PyTorch, one process, hooks for whatever wraps it.

Usage:

    result = train_loop(model, train_loader, val_loader, params.train.loop, seed=0)

The loop needs only `loss = model(x, y)[1]` and batches of `(x, y)`, so it trains any family
of `aigc.models`. It knows nothing of Ray, MLflow or files. A wrapper (the Ray TorchTrainer
worker function) passes `LoopHooks`: `on_step` / `on_eval` to report metrics,
`save_checkpoint` to persist a state, `agree_to_stop` to make every worker stop together; and
passes `resume_state` to continue from a saved state. The loop calls every hook the same
number of times in every process; deciding that only rank 0 writes is the wrapper's business.
If the wrapper hands in a DistributedDataParallel model, gradient accumulation skips the
gradient all-reduce on all but the last micro-batch (`no_sync`).

Decisions:

- AdamW with decoupled weight decay on matrices only (every parameter with 2+ dimensions:
  linear and LSTM weights and the embeddings, which here are tied to the output layer, as in
  nanoGPT); biases and norm gains are not decayed, as shrinking them toward zero buys nothing.
- Learning rate: linear warmup over `warmup_steps`, then cosine decay to `min_lr` at
  `lr_decay_steps` (default `max_steps`), then flat. It is a pure function of the step, so a
  resumed run needs no scheduler state. With neither set, the rate stays at `lr` after warmup.
- Budgets (`max_steps`, `max_tokens`, `max_minutes`; at least one) are checked after each
  optimizer step: training stops after the first step that reaches any of them, so the token
  budget may be overshot by less than one step's tokens. Tokens are the input tokens this
  process has trained on.
- Determinism: with the same model weights, data, config and seed, two CPU runs end with
  identical weights, and a run resumed from the state saved at step k ends identical to one
  never interrupted. The sources of randomness are the global torch RNG (dropout; seeded from
  `seed`, saved in the state) and the sampler's order. Shuffle with a sampler whose order is a
  function of its epoch (`EpochShuffleSampler`, or DistributedSampler under Ray): the loop calls
  `set_epoch` on it and, on resume, skips the batches of the current epoch already trained on.
  Data-loader iterators are created outside the training RNG stream, so evaluation and epoch
  boundaries do not move it.
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
from aigc.models.base import unwrap_model

STATE_VERSION = 1


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


def make_optimizer(model: nn.Module, config: LoopParams) -> torch.optim.AdamW:
    """AdamW with weight decay on 2-D+ parameters only (see the module docstring)."""
    parameters = [parameter for parameter in model.parameters() if parameter.requires_grad]
    decay = [parameter for parameter in parameters if parameter.dim() >= 2]
    no_decay = [parameter for parameter in parameters if parameter.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: Any,
    max_batches: int,
    device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> dict[str, float]:
    """Mean loss over the first `max_batches` batches, weighted by tokens per batch."""
    was_training = model.training
    model.eval()
    total_loss, total_tokens = 0.0, 0
    try:
        for index, (x, y) in enumerate(_iterate(loader)):
            if index >= max_batches:
                break
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast():
                _, loss = model(x, y)
            total_loss += float(loss) * y.numel()
            total_tokens += y.numel()
    finally:
        model.train(was_training)
    if total_tokens == 0:
        raise ValueError("the validation loader yielded no batches; give it at least one")
    return {"val_loss": total_loss / total_tokens, "val_tokens": float(total_tokens)}


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

    `train_loader` and `val_loader` are iterables of (x, y) batches (DataLoaders, typically);
    `resume_state` is a state previously given to `hooks.save_checkpoint`; `seed` seeds the
    training RNG stream (dropout); `device` is "cpu" or "cuda[:N]".
    """
    hooks = hooks or LoopHooks()
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device} was asked for but no CUDA device is visible")
    module = unwrap_model(model)
    model.to(device)
    optimizer = make_optimizer(module, config)
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
            resume_state, module, optimizer
        )
    batches = _train_batches(train_loader, epoch, batches_done)
    started, tokens_at_start = time.monotonic(), tokens_seen
    evaluations: list[dict[str, float]] = []
    train_loss = math.nan
    stop_reason = ""
    model.train()

    while not stop_reason:
        lr = learning_rate(step, config)
        for group in optimizer.param_groups:
            group["lr"] = lr
        step_loss = torch.zeros((), device=device)
        for micro in range(config.grad_accumulation):
            epoch, batches_done, (x, y) = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            last_micro = micro == config.grad_accumulation - 1
            sync = contextlib.nullcontext() if last_micro else _no_sync(model)
            with sync:
                with autocast():
                    _, loss = forward_model(x, y)
                (loss / config.grad_accumulation).backward()
            step_loss += loss.detach() / config.grad_accumulation  # no host sync per micro-batch
            tokens_seen += x.numel()
        # With clipping off, an infinite threshold still measures the norm, a useful metric.
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(module.parameters(), max_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        train_loss = float(step_loss)
        elapsed = elapsed_before + time.monotonic() - started

        stop_reason = _budget_reached(config, step, tokens_seen, elapsed)
        if hooks.agree_to_stop is not None:
            agreed = hooks.agree_to_stop(bool(stop_reason))
            stop_reason = (stop_reason or "agreed") if agreed else ""
        if hooks.on_step is not None:
            hooks.on_step(
                {
                    "step": float(step),
                    "loss": train_loss,
                    "lr": lr,
                    "grad_norm": grad_norm,
                    "tokens_seen": float(tokens_seen),
                    "epoch": float(epoch),
                    "elapsed_seconds": elapsed,
                    "tokens_per_second": (tokens_seen - tokens_at_start)
                    / max(elapsed - elapsed_before, 1e-9),
                    "peak_memory_mb": _peak_memory_mb(device),
                }
            )
        if val_loader is not None and (
            stop_reason or (config.eval_every and step % config.eval_every == 0)
        ):
            metrics = {"step": float(step), "tokens_seen": float(tokens_seen)}
            metrics |= evaluate(forward_model, val_loader, config.eval_batches, device, autocast)
            evaluations.append(metrics)
            if hooks.on_eval is not None:
                hooks.on_eval(metrics)
        if hooks.save_checkpoint is not None and (
            stop_reason or (config.checkpoint_every and step % config.checkpoint_every == 0)
        ):
            hooks.save_checkpoint(
                _state(module, optimizer, step, tokens_seen, epoch, batches_done, elapsed)
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
    optimizer: torch.optim.Optimizer,
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
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "step": step,
        "tokens_seen": tokens_seen,
        "epoch": epoch,
        "batches_done_in_epoch": batches_done,
        "elapsed_seconds": elapsed,
    }


def _restore(
    state: dict[str, Any], module: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, int, int, int, float]:
    if state.get("version") != STATE_VERSION:
        raise ValueError(
            f"resume state version {state.get('version')!r} is not {STATE_VERSION}; "
            "it was saved by another version of the training loop"
        )
    module.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
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
