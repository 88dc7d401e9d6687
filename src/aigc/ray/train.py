"""Distributed training on Ray Train (V2): the driver's side of a training run.

    connect(params.train.ray, paths.work)   # aigc.ray.cluster: a local Ray, or a cluster
    outcome = train_on_ray(job, params.train.ray, run=RunLink(...), storage=path, name=run_id,
                           model_dir=where_the_final_model_goes)

Every worker runs `aigc.ray.worker.train_loop_per_worker`; `aigc.ray.checkpoints` keeps the
run's storage folder (checkpoints, starts); rank 0's progress reaches `on_progress` through
`aigc.ray.progress`. When a worker process dies, `FailureConfig(max_failures)` restarts the
group and each worker resumes from the last checkpoint (or from scratch, before the first);
the MLflow run continues (same run id). Once the final model is copied to `model_dir`, the
run's storage folder (checkpoints) is deleted. A training that Ray ends because its workers
were lost (a node gone, a worker process dead) raises `WorkersLostError`, one sentence that
names the lost node and the fix.

`train_on_ray(..., on_worker_step=callback)` calls `callback(rank, step)` in every worker after
each step: a hook for whoever needs the workers' own processes (the tests kill one there).
It is pickled to the workers, so it must be importable there (a module-level function or a
dataclass instance).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aigc import timing
from aigc.config import RayParams
from aigc.errors import UserError
from aigc.ray.checkpoints import (
    BUNDLE_DIR,
    STATE_FILE,
    attempts,
    load_training_state,
    storage_location,
)
from aigc.ray.cluster import wants_gpu
from aigc.ray.progress import drain, open_queue
from aigc.ray.worker import RunLink, train_loop_per_worker
from aigc.train.job import Job

# How long a restart of the worker group waits for the nodes it needs (a lost node's
# replacement, say) before Ray counts a failed start (Ray's default is 60 s).
WORKER_GROUP_START_VARIABLE = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
WORKER_GROUP_START_SECONDS = 20.0


class WorkersLostError(UserError):
    """Training ended because its workers died, or could not start again (a node lost),
    more often than `train.ray.max_failures` allows."""


@dataclass(frozen=True)
class TrainOutcome:
    bundle_dir: Path  # the job's bundle folder of the final model (the caller's model_dir)
    metrics: dict[str, float]  # final train/val loss, steps, tokens (or images), throughput
    restarts: int
    seconds: float


def train_on_ray(
    job: Job,
    params: RayParams,
    run: RunLink | None,
    storage: str | Path,
    name: str,
    model_dir: Path,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    on_worker_step: Callable[[int, int], None] | None = None,
) -> TrainOutcome:
    """Fit `job` with a TorchTrainer; blocks until done; raises if training failed.

    Needs a connected Ray (`connect`). `storage` is a folder or a URI (`storage_location`).
    The final model is copied to `model_dir`; the run's storage folder, `storage/name`, is
    deleted whether training succeeded or not. `on_progress` hears rank 0's progress in this
    process; `on_worker_step(rank, step)` runs in every worker after each step."""
    import ray
    from ray.train import (
        CheckpointConfig,
        FailureConfig,
        RunConfig,
        ScalingConfig,
        TrainingFailedError,
    )

    if not ray.is_initialized():
        raise RuntimeError("train_on_ray needs a Ray: call connect(params, work_dir) first")
    started = time.perf_counter()
    use_gpu = wants_gpu(params, dict(ray.cluster_resources()))
    if use_gpu:
        job = _on_device(job, "cuda")
    filesystem, storage_root = storage_location(storage)
    run_dir = f"{storage_root}/{name}"
    # Ray waits 60 s for each restart's workers; a lost node then costs 3 minutes at
    # max_failures 2. The variable, when set, is the user's and wins.
    os.environ.setdefault(WORKER_GROUP_START_VARIABLE, str(WORKER_GROUP_START_SECONDS))
    nodes_at_start = _alive_nodes()
    progress = open_queue()  # on the driver's node
    environment = {"MLFLOW_TRACKING_URI": run.settings.tracking_uri} if run else {}
    environment |= {"OMP_NUM_THREADS": str(max(1, int(params.cpus_per_worker)))}
    trainer = _trainer_class()(
        train_loop_per_worker,
        train_loop_config={
            "job": job,
            "run": run,
            "progress": progress,
            "threads": max(1, int(params.cpus_per_worker)),
            "run_dir": (filesystem, run_dir),
            "on_step": on_worker_step,
        },
        scaling_config=ScalingConfig(
            num_workers=params.num_workers,
            use_gpu=use_gpu,
            resources_per_worker={"CPU": params.cpus_per_worker} | ({"GPU": 1} if use_gpu else {}),
        ),
        run_config=RunConfig(
            name=name,
            storage_path=storage_root,
            storage_filesystem=filesystem,
            # A lost node that nothing replaces fails the worker group's start; unlimited by
            # default, Ray would retry that forever instead of ending the run with its error.
            failure_config=FailureConfig(
                max_failures=params.max_failures,
                controller_failure_limit=max(0, params.max_failures),
            ),
            checkpoint_config=CheckpointConfig(num_to_keep=params.checkpoints_to_keep),
            worker_runtime_env={"env_vars": environment},
        ),
    )
    done, first = threading.Event(), {}
    drainer = threading.Thread(
        target=drain, args=(progress, on_progress, done, first), daemon=True
    )
    drainer.start()
    try:
        try:
            fit_started = time.perf_counter()
            result = trainer.fit()
            wall = time.perf_counter() - fit_started
        except TrainingFailedError as error:
            lost = workers_lost(error, params, nodes_at_start)
            if lost is None:  # the training code failed: a bug, with its traceback
                raise
            raise lost from None
        finally:
            done.set()
            drainer.join(timeout=5)
        if result.error is not None:
            _record_fit_parts(fit_started, wall, first, None)
            raise RuntimeError(f"training failed on Ray: {result.error}") from result.error
        if result.checkpoint is None:
            raise RuntimeError("training finished without a final checkpoint")
        with result.checkpoint.as_directory() as checkpoint_dir:  # fetched when remote
            state = load_training_state(Path(checkpoint_dir) / STATE_FILE)
            shutil.rmtree(model_dir, ignore_errors=True)
            shutil.copytree(Path(checkpoint_dir) / BUNDLE_DIR, model_dir)
        _record_fit_parts(fit_started, wall, first, state)
        restarts = len(attempts((filesystem, run_dir))) - 1
    finally:
        with contextlib.suppress(Exception):  # already gone, or the store unreachable
            filesystem.delete_dir(run_dir)
    return TrainOutcome(
        bundle_dir=Path(model_dir),
        metrics=state["summary"],
        restarts=max(0, restarts),
        seconds=time.perf_counter() - started,
    )


def workers_lost(
    error: Exception, params: RayParams, nodes_at_start: dict[str, dict]
) -> WorkersLostError | None:
    """The one-line error for a training that Ray Train ended, after `params.max_failures`
    restarts, because its workers were lost: a node of the cluster gone, a worker process
    dead, or a worker group that could not start again. None for any other failure (the
    training code raised: a bug, which keeps its traceback).

    `nodes_at_start` are the cluster's live nodes when training started (`_alive_nodes`); one
    that Ray now counts as dead, or whose raylet no longer answers, is named as lost."""
    from ray.exceptions import RayActorError
    from ray.train import ControllerError, WorkerGroupError
    from ray.train.v2._internal.exceptions import (
        WorkerGroupStartupFailedError,
        WorkerGroupStartupTimeoutError,
        WorkerHealthCheckFailedError,
    )

    alive = _alive_nodes()
    lost = {
        node_id: node
        for node_id, node in nodes_at_start.items()
        if node_id not in alive or not _answers(node)
    }
    waited = float(os.environ.get(WORKER_GROUP_START_VARIABLE, WORKER_GROUP_START_SECONDS))
    if isinstance(error, ControllerError):
        failure = error.controller_failure
        if not isinstance(failure, WorkerGroupStartupTimeoutError | WorkerGroupStartupFailedError):
            return None
        what = f"the worker group could not start again within {waited:g} s"
    elif isinstance(error, WorkerGroupError):
        # When a node goes, the ranks elsewhere fail too (their collective's peer is gone):
        # the lost node, or a worker process that died, is the cause, not their errors.
        died = [
            str(rank)
            for rank, failure in sorted(error.worker_failures.items())
            if isinstance(failure, WorkerHealthCheckFailedError)
            and isinstance(failure.health_check_failure, RayActorError)
        ]
        if not died and not lost:
            return None
        what = f"the worker process of rank {', '.join(died)} died" if died else "its workers died"
    else:
        return None
    cpus = sum(node["Resources"].get("CPU", 0.0) for i, node in alive.items() if i not in lost)
    need = (
        f"the training needs {params.num_workers} workers x {params.cpus_per_worker:g} CPU "
        f"and the live nodes have {cpus:g} CPU"
    )
    restarts = f"after train.ray.max_failures={params.max_failures} restart(s) of the worker group"
    if lost:
        names = ", ".join(f"{node['NodeManagerAddress']} (id {i[:8]})" for i, node in lost.items())
        return WorkersLostError(
            f"training stopped: Ray node {names} was lost and {what}, {restarts}; {need}. "
            "Bring the node back (on the stack: `aigc stack up`) and train again, or raise "
            f"train.ray.max_failures (each restart waits up to {waited:g} s for a node)"
        )
    return WorkersLostError(
        f"training stopped: {what}, {restarts}; no node of the cluster was lost, and {need}. "
        "See the Ray logs of the worker (an out-of-memory kill?), or raise "
        "train.ray.max_failures, or lower train.ray.num_workers"
    )


def _alive_nodes() -> dict[str, dict]:
    """The cluster's live nodes: {node id: Ray's record of it (address, resources)}."""
    import ray

    return {node["NodeID"]: node for node in ray.nodes() if node["Alive"]}


def _answers(node: dict) -> bool:
    """Whether the node's raylet accepts a connection: Ray's GCS marks a node dead only
    after several missed health checks (15 s or more), which a failed restart may not wait."""
    try:
        address = (node["NodeManagerAddress"], node["NodeManagerPort"])
        socket.create_connection(address, timeout=2).close()
    except OSError:
        return False
    return True


def _trainer_class():
    """TorchTrainer without Ray Train's placement-group cleaner and datasets callback.

    The cleaner is an actor that asks Ray's State API, every second, whether the controller
    still lives, to free the placement group of a controller that died. The State API is
    served by Ray's dashboard, which aigc's Rays (local and the stack's) do not run: every ask
    waits out its 10 s timeout, the cleaner never learns anything, and stopping it at the end
    of each training waits 12 s for its thread ("Failed to stop PlacementGroupCleaner
    gracefully"). A placement group of a controller that dies goes with its job anyway.
    The datasets callback sets up Ray Data for the datasets a trainer is given; aigc gives
    none (a job carries its data), and it cost an actor's start (about 0.5 s) per training."""
    from ray.train.torch import TorchTrainer

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [
                callback
                for callback in super()._create_default_callbacks()
                if type(callback).__name__
                not in {"PlacementGroupCleanerCallback", "DatasetsCallback"}
            ]

    return Trainer


def _record_fit_parts(fit_started: float, wall: float, first: dict, state: dict | None) -> None:
    """Split `trainer.fit()`'s `wall` time: start until the first step, training, the rest."""
    training = float(state["summary"].get("elapsed_seconds", 0.0)) if state else 0.0
    startup = first["at"] - fit_started - first["elapsed"] if first else wall - training
    timing.record("ray train start until the first step", startup)
    timing.record("training", training)
    timing.record("ray train end", wall - startup - training)


def _on_device(job: Job, device: str) -> Job:
    from dataclasses import replace

    return replace(job, device=device)
