"""The function every Ray Train worker runs: the training loop plus what Ray needs.

That is `prepare_model` (DDP), `prepare_data_loader` (device placement), `report` with a
checkpoint, and `get_checkpoint` to resume; the loop itself (`aigc.train.job.run_loop`) knows
nothing of Ray and takes these as hooks. Every rank reports the same number of times (report
is a barrier): at every checkpoint step and at the end. Rank 0 writes the tracking records
(MLflow metrics, batched, in the run that `RunLink` names) and puts progress on the driver's
queue; the workers' node ids are the run's tag `aigc.ray_node_ids`.

Ray pickles `train_loop_per_worker` by module path: every worker imports this module.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc.models.base import unwrap_model
from aigc.ray.checkpoints import BUNDLE_DIR, record_attempt, resume_state, write_checkpoint
from aigc.ray.progress import PROGRESS_INTERVAL_SECONDS
from aigc.tracking import TrackingSettings
from aigc.train.job import Job, build_loaders, build_model_for, run_loop
from aigc.train.loop import LoopHooks

NODES_TAG = "aigc.ray_node_ids"  # the training workers' Ray nodes, in rank order


@dataclass(frozen=True)
class RunLink:
    """Where rank 0 writes tracking records: an MLflow run (resolved settings and id)."""

    settings: TrackingSettings
    run_id: str
    log_every: int = 10


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import torch.distributed as dist
    from ray.train.torch import prepare_data_loader, prepare_model

    job: Job = config["job"]
    link: RunLink | None = config["run"]
    torch.set_num_threads(config["threads"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()

    model = build_model_for(job)
    train_loader, val_loader = build_loaders(job, rank, world_size)
    resumed = resume_state(ray.train.get_checkpoint(), rank)
    # Counted from the run's own record, not the checkpoint: a group that died before its
    # first checkpoint restarts from scratch, and that is a restart too.
    restarts = record_attempt(config["run_dir"]) if rank == 0 else 0
    model = prepare_model(model, parallel_strategy_kwargs=job.ddp_options)
    train_loader = prepare_data_loader(train_loader, move_to_device=False)
    val_loader = prepare_data_loader(val_loader, move_to_device=False)

    tracker = _RankZeroTracker(link, config["progress"], restarts, job.unit) if rank == 0 else None
    nodes = _node_ids(world_size)
    if tracker and tracker.run:
        tracker.run.set_tags({NODES_TAG: ",".join(nodes)})
    step_hook = config["on_step"]

    def on_step(metrics: dict[str, float]) -> None:
        if tracker:
            tracker.step(metrics, world_size)
        if step_hook is not None:
            step_hook(rank, int(metrics["step"]))

    def on_eval(metrics: dict[str, float]) -> None:
        if tracker:
            tracker.evaluation(metrics)

    def agree_to_stop(stop: bool) -> bool:
        # Step and token budgets end every rank at the same step; only a time budget can
        # make ranks disagree, so only then is the decision shared (an all-reduce a step).
        if world_size == 1 or not dist.is_initialized() or job.loop.max_minutes is None:
            return stop
        flag = torch.tensor([1.0 if stop else 0.0], device=job.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def save_checkpoint(state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory() as directory:
            summary = (tracker.summary(state) if tracker else {}) if rank == 0 else None
            write_checkpoint(Path(directory), state, rank, summary)
            if rank == 0:
                job.bundle(unwrap_model(model)).save(Path(directory) / BUNDLE_DIR)
            metrics = {"step": state["step"]}
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))

    hooks = LoopHooks(
        on_step=on_step,
        on_eval=on_eval,
        save_checkpoint=save_checkpoint,
        agree_to_stop=agree_to_stop,
    )
    try:
        run_loop(job, model, train_loader, val_loader, hooks, resumed, rank)
    finally:
        if tracker:
            tracker.flush()


def _node_ids(world_size: int) -> list[str]:
    """The Ray node id of every rank, in rank order (an all-gather: every rank calls it)."""
    import ray
    import torch.distributed as dist

    node = ray.get_runtime_context().get_node_id()
    if world_size == 1 or not dist.is_initialized():
        return [node]
    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, node)
    return [str(item) for item in gathered]


class _RankZeroTracker:
    """Rank 0's tracking: MLflow metrics (batched) and progress for the driver."""

    def __init__(self, link: RunLink | None, progress, restarts: int, unit: str) -> None:
        self.link = link
        self.unit = unit  # "tokens" or "images": what the throughput counts
        self.progress = progress
        self.run = None
        if link is not None:
            from aigc.tracking import TrainingRun

            self.run = TrainingRun.resume(link.settings, link.run_id)
        self.pending: list[tuple[dict[str, float], int]] = []
        self.last: dict[str, float] = {"restarts": float(restarts)}
        self.last_progress = 0.0
        if self.run and restarts:
            self.run.log_metrics({"restarts": float(restarts)}, step=0)

    def step(self, metrics: dict[str, float], world_size: int) -> None:
        step = int(metrics["step"])
        record = {
            "train_loss": metrics["loss"],
            "lr": metrics["lr"],
            "grad_norm": metrics["grad_norm"],
            # every worker trains on its own batches: cluster throughput is world × rank 0's
            f"{self.unit}_per_second": metrics["tokens_per_second"] * world_size,
            f"{self.unit}_seen": metrics["tokens_seen"] * world_size,
            "peak_memory_mb": metrics["peak_memory_mb"],
            # several optimizers (a GAN's): each one's loss, as train_loss_<name>
            **{f"train_{key}": value for key, value in metrics.items() if key.startswith("loss_")},
        }
        self.last |= record | {"step": float(step), "elapsed_seconds": metrics["elapsed_seconds"]}
        self.pending.append((record, step))
        if self.link and len(self.pending) >= self.link.log_every:
            self.flush()
        now = time.monotonic()
        if now - self.last_progress >= PROGRESS_INTERVAL_SECONDS:
            self.last_progress = now
            with contextlib.suppress(Exception):  # a full queue only costs an update
                timed = {"step": step, "elapsed_seconds": metrics["elapsed_seconds"]}
                self.progress.put_nowait(timed | record)

    def evaluation(self, metrics: dict[str, float]) -> None:
        step = int(metrics["step"])
        record = {"val_loss": metrics["val_loss"]}
        self.last |= record
        self.pending.append((record, step))
        self.flush()

    def flush(self) -> None:
        if self.run:
            self.run.log_metric_steps(self.pending)
        self.pending.clear()

    def summary(self, state: dict[str, Any]) -> dict[str, float]:
        with contextlib.suppress(Exception):  # the bar shows the last step, throttled or not
            self.progress.put_nowait({key: value for key, value in self.last.items()})
        return {**self.last, "step": float(state["step"])}
