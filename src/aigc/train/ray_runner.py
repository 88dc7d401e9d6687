"""Distributed training on Ray Train (V2): the only module of aigc that imports `ray`.

    connect(params.train.ray, paths.work)   # a local Ray of the project's own, or a cluster
    outcome = train_on_ray(job, params.train.ray, run=RunLink(...), storage=path, name=run_id,
                           model_dir=where_the_final_model_goes)

A local Ray (`train.ray.address` null) runs on this machine only: every node address is the
loopback address and clients must present the project's own token (`.aigc/ray/auth-token`,
created once, mode 0600), never one from the home folder. A cluster (`address` set) is
joined with the token the environment names (RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN).

The worker function is the training loop plus what Ray needs and nothing more:
`prepare_model` (DDP), `prepare_data_loader` (device placement), `report` with a checkpoint,
and `get_checkpoint` to resume. Every rank reports the same number of times (report is a
barrier): at every checkpoint step and at the end. Rank 0 writes the shared state (model,
optimizer, step) and the tracking records; every rank adds its own RNG state, so a resumed
run draws the same dropout masks as an uninterrupted one and ends with the same weights.
States hold only tensors and plain values and load with `weights_only=True`: a checkpoint on
shared storage cannot run code in the driver or a worker.

When a worker process dies, `FailureConfig(max_failures)` restarts the group and each worker
resumes from the last checkpoint (or from scratch, before the first); the MLflow run
continues (same run id). Rank 0 writes a file in the run's attempts folder at every start
(object stores cannot append), so restarts are counted either way. Once the final model is
copied to `model_dir`, the run's storage folder (checkpoints) is deleted. The storage is a
folder or a URI (s3://…, `storage_location`); the workers' node ids are the run's tag
`aigc.ray_node_ids`. Progress (step, loss, lr, tokens/s) flows from
rank 0 to the driver through a Ray queue, where the caller shows it (a progress bar in the CLI).

`train_on_ray(..., on_worker_step=callback)` calls `callback(rank, step)` in every worker after
each step: a hook for whoever needs the workers' own processes (the tests kill one there).
It is pickled to the workers, so it must be importable there (a module-level function or a
dataclass instance).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aigc import runtime, timing
from aigc.config import RayParams
from aigc.errors import UserError
from aigc.generator import TextGenerator
from aigc.models.base import unwrap_model
from aigc.tracking import TrackingSettings
from aigc.train.job import Job, build_loaders, build_model_for, run_loop
from aigc.train.loop import LoopHooks

STATE_FILE = "state.pt"
BUNDLE_DIR = "bundle"
ATTEMPTS_FILE = "aigc-attempts"
TOKEN_FILE = Path("ray") / "auth-token"  # under the project's .aigc folder
LOOPBACK = "127.0.0.1"
PROGRESS_INTERVAL_SECONDS = 0.25
NODES_TAG = "aigc.ray_node_ids"  # the training workers' Ray nodes, in rank order
EVALUATION_NODES_TAG = "aigc.ray_evaluation_node_ids"  # the evaluation shards', in shard order
# How long a restart of the worker group waits for the nodes it needs (a lost node's
# replacement, say) before Ray counts a failed start (Ray's default is 60 s).
WORKER_GROUP_START_VARIABLE = "RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"
WORKER_GROUP_START_SECONDS = 20.0


class WorkersLostError(UserError):
    """Training ended because its workers died, or could not start again (a node lost),
    more often than `train.ray.max_failures` allows."""


@dataclass(frozen=True)
class RunLink:
    """Where rank 0 writes tracking records: an MLflow run (resolved settings and id)."""

    settings: TrackingSettings
    run_id: str
    log_every: int = 10


@dataclass(frozen=True)
class TrainOutcome:
    bundle_dir: Path  # the job's bundle folder of the final model (the caller's model_dir)
    metrics: dict[str, float]  # final train/val loss, steps, tokens (or images), throughput
    restarts: int
    seconds: float


def connect(params: RayParams, work_dir: Path) -> dict[str, float]:
    """Start a local Ray (or join `params.address`); returns the cluster's resources.

    `work_dir` is the project's `.aigc` folder: the local Ray's token lives there, and the
    processes of a local Ray are recorded in this process's run record (`aigc.runtime`).
    A process keeps the first Ray it connects to."""
    import ray

    if not ray.is_initialized():
        if params.address:
            _join_cluster(params.address)
        else:
            cpus = max(os.cpu_count() or 1, int(params.num_workers * params.cpus_per_worker))
            _start_local(cpus, work_dir)
            runtime.start(work_dir).note_children()
    return dict(ray.cluster_resources())


def local_token(work_dir: Path) -> Path:
    """The project's Ray token file: created once (mode 0600), then reused."""
    path = Path(work_dir) / TOKEN_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another run created it first
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as file:
                file.write(secrets.token_hex(32))
    return path


def _start_local(cpus: int, work_dir: Path) -> None:
    import ray

    # Token authentication with the project's own token: every process Ray starts (GCS,
    # raylet, workers) inherits these variables; a token in the environment or in the home
    # folder is never used, since RAY_AUTH_TOKEN would take precedence over the path.
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(local_token(work_dir).resolve())
    os.environ.pop("RAY_AUTH_TOKEN", None)
    _single_machine()
    _reload_auth_settings()
    ray.init(
        address="local",  # never RAY_ADDRESS: a null train.ray.address means this machine
        num_cpus=cpus,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address=LOOPBACK,
    )


def _single_machine() -> None:
    """Keep a local Ray on the loopback address: GCS, raylet, workers, agents, autoscaler.

    Ray rewrites 127.0.0.1 to the machine's address (so that other nodes could join) unless
    clusters are switched off, as they are on Windows and macOS; this is Ray's switch for that,
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0. Ray reads it into a constant when imported, which
    may have happened before this call: the constant is set too."""
    from ray._private import ray_constants

    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def _reload_auth_settings() -> None:
    # Ray caches the authentication mode and the token per process; a process that used
    # another token before (a test session with several projects) must read them again.
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _join_cluster(address: str) -> None:
    import ray
    from ray.exceptions import AuthenticationError

    mode = os.environ.get("RAY_AUTH_MODE", "").lower()
    token_path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    has_token = bool(os.environ.get("RAY_AUTH_TOKEN")) or bool(token_path)
    fix = (
        "export RAY_AUTH_TOKEN_PATH=FILE, a file holding the cluster's token (`ray "
        "get-auth-token` prints it on the head node), or RAY_AUTH_TOKEN=TOKEN; for a cluster "
        "started with RAY_AUTH_MODE=disabled, export RAY_AUTH_MODE=disabled"
    )
    if mode != "disabled":
        if not has_token:
            raise UserError(
                f"train.ray.address is {address!r}, and no token to join it: aigc takes a "
                f"cluster's token from the environment only; {fix}"
            )
        if token_path and not os.environ.get("RAY_AUTH_TOKEN") and not Path(token_path).is_file():
            raise UserError(
                f"RAY_AUTH_TOKEN_PATH={token_path} is not a file, so aigc has no token to join "
                f"the Ray cluster at {address!r}; {fix}"
            )
        os.environ["RAY_AUTH_MODE"] = "token"
        _reload_auth_settings()
        if _token_refused(address):
            source = "RAY_AUTH_TOKEN" if os.environ.get("RAY_AUTH_TOKEN") else token_path
            raise UserError(
                f"the Ray cluster at train.ray.address={address!r} refused the token from "
                f"{source}: it is not that cluster's token; {fix}"
            )
    try:
        ray.init(address=address, log_to_driver=False)
    except (ConnectionError, AuthenticationError, RuntimeError) as error:
        raise UserError(
            f"could not join the Ray cluster at train.ray.address={address!r} "
            f"({str(error).splitlines()[0]}); check that the cluster runs there and that the "
            f"token is the cluster's: {fix}"
        ) from None


def _token_refused(address: str) -> bool:
    """Whether the GCS at `address` rejects our token: known at once, where `ray.init` only
    gives up after about 20 seconds with a message that could mean anything."""
    from ray._raylet import GcsClient
    from ray.exceptions import AuthenticationError

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return False  # "auto" or ray://: resolved by ray.init itself
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError:
        return False  # nothing answers there: ray.init says so (its client would wait 40 s)
    try:
        GcsClient(address=address)
    except AuthenticationError:
        return True
    except Exception:  # any other failure is ray.init's to report
        return False
    return False


def wants_gpu(params: RayParams, resources: dict[str, float]) -> bool:
    if params.use_gpu == "auto":
        return resources.get("GPU", 0) >= 1
    return bool(params.use_gpu)


def storage_location(storage: str | Path):
    """(pyarrow filesystem, path in it) of `train.ray.storage_path`: a folder, or a URI.

    An s3:// URI is reached through the endpoint that AWS_ENDPOINT_URL_S3 (or
    AWS_ENDPOINT_URL) names, with the key from the environment (the stack's profile, or a
    team's). The filesystem holds no key when pickled: every Ray node reads its own."""
    import pyarrow.fs

    text = str(storage)
    if "://" not in text:
        return pyarrow.fs.LocalFileSystem(), str(Path(text).resolve())
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if text.startswith("s3://") and endpoint:
        scheme, _, host = endpoint.rpartition("://")
        filesystem = pyarrow.fs.S3FileSystem(
            endpoint_override=host,
            scheme=scheme or "https",
            region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        )
        return filesystem, text.removeprefix("s3://").rstrip("/")
    return pyarrow.fs.FileSystem.from_uri(text)


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
    from ray.util.queue import Queue
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

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
    # On the driver's node: a queue on a worker node dies with it, and no progress comes after.
    here = NodeAffinitySchedulingStrategy(
        node_id=ray.get_runtime_context().get_node_id(), soft=False
    )
    progress = Queue(maxsize=1000, actor_options={"num_cpus": 0, "scheduling_strategy": here})
    environment = {"MLFLOW_TRACKING_URI": run.settings.tracking_uri} if run else {}
    environment |= {"OMP_NUM_THREADS": str(max(1, int(params.cpus_per_worker)))}
    trainer = _trainer_class()(
        _worker,
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
    drain = threading.Thread(target=_drain, args=(progress, on_progress, done, first), daemon=True)
    drain.start()
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
            drain.join(timeout=5)
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
        restarts = len(_attempts((filesystem, run_dir))) - 1
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
    """TorchTrainer without Ray Train's placement-group cleaner.

    The cleaner is an actor that asks Ray's State API, every second, whether the controller
    still lives, to free the placement group of a controller that died. The State API is
    served by Ray's dashboard, which aigc's Rays (local and the stack's) do not run: every ask
    waits out its 10 s timeout, the cleaner never learns anything, and stopping it at the end
    of each training waits 12 s for its thread ("Failed to stop PlacementGroupCleaner
    gracefully"). A placement group of a controller that dies goes with its job anyway."""
    from ray.train.torch import TorchTrainer

    class Trainer(TorchTrainer):
        def _create_default_callbacks(self):
            return [
                callback
                for callback in super()._create_default_callbacks()
                if type(callback).__name__ != "PlacementGroupCleanerCallback"
            ]

    return Trainer


def _record_fit_parts(fit_started: float, wall: float, first: dict, state: dict | None) -> None:
    """Split `trainer.fit()`'s `wall` time: start until the first step, training, the rest."""
    training = float(state["summary"].get("elapsed_seconds", 0.0)) if state else 0.0
    startup = first["at"] - fit_started - first["elapsed"] if first else wall - training
    timing.record("ray train start until the first step", startup)
    timing.record("training", training)
    timing.record("ray train end", wall - startup - training)


def load_training_state(path: Path) -> dict[str, Any]:
    """A state file of a checkpoint, loaded with `weights_only=True`: tensors and plain values.

    A checkpoint folder may sit on storage that other machines write; a file that holds
    anything else (a pickled object runs code when loaded) is refused, not loaded."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = next(
            (line.strip() for line in str(error).splitlines() if "GLOBAL" in line),
            str(error).splitlines()[0],
        )
        raise ValueError(
            f"refused to load the training state {path}: it holds more than tensors and plain "
            f"values ({reason}), which no state written by aigc does, so the file was altered "
            "or put there by someone else; find out who can write the checkpoint storage "
            "(train.ray.storage_path), delete this run's folder and train again"
        ) from None


def _attempts(run_dir) -> list[str]:
    """The starts of the worker group, one file each in the run's folder (any filesystem:
    object stores cannot append)."""
    import pyarrow.fs

    filesystem, path = run_dir
    selector = pyarrow.fs.FileSelector(f"{path}/{ATTEMPTS_FILE}", allow_not_found=True)
    return sorted(info.base_name for info in filesystem.get_file_info(selector))


def _on_device(job: Job, device: str) -> Job:
    from dataclasses import replace

    return replace(job, device=device)


def _drain(progress, on_progress, done: threading.Event, first: dict) -> None:
    """Hand rank 0's progress to `on_progress` until training is done and the queue empty.

    A queue whose actor died (ActorDiedError: its node lost) can deliver nothing more: the
    progress ends there, quietly, and the training goes on."""
    while True:
        try:
            if done.is_set() and progress.empty():
                return
            item = progress.get(timeout=0.5)
        except queue.Empty:  # nothing within the timeout (ray's Empty is one)
            continue
        except Exception:  # the queue's actor is gone
            return
        if not first:  # when the first step arrived, and how long that step itself took
            first.update(at=time.perf_counter(), elapsed=item.get("elapsed_seconds", 0.0))
        if on_progress is not None:
            on_progress(item)


# --- the worker ------------------------------------------------------------------------


def _worker(config: dict[str, Any]) -> None:
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
    restarts = _record_attempt(config["run_dir"]) if rank == 0 else 0
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


def write_checkpoint(
    directory: Path, state: dict[str, Any], rank: int, summary: dict | None
) -> None:
    """A rank's part of a checkpoint: its RNG state; rank 0 (`summary` given) also the shared
    state (model, every optimizer, scheduler, step, data position) and the run's summary."""
    torch.save(state["rng"], directory / f"rng-rank{rank}.pt")
    if summary is not None:
        shared = {key: value for key, value in state.items() if key != "rng"}
        torch.save({**shared, "summary": summary}, directory / STATE_FILE)


def resume_state(checkpoint, rank: int) -> dict | None:
    """The loop state `rank` resumes from: what `write_checkpoint` wrote, weights only."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as directory:
        state = load_training_state(Path(directory) / STATE_FILE)
        rng_file = Path(directory) / f"rng-rank{rank}.pt"
        if rng_file.exists():
            state["rng"] = load_training_state(rng_file)
    state.pop("summary", None)
    return state


def _record_attempt(run_dir) -> int:
    """Record this start of the worker group in the run's folder; the starts before it."""
    filesystem, path = run_dir
    before = len(_attempts(run_dir))
    filesystem.create_dir(f"{path}/{ATTEMPTS_FILE}", recursive=True)
    name = f"{path}/{ATTEMPTS_FILE}/{time.time_ns()}-{secrets.token_hex(4)}"
    with filesystem.open_output_stream(name) as stream:
        stream.write(f"started at {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
    return before


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


# --- evaluation spread over Ray workers --------------------------------------------------


def evaluate_on_ray(
    bundle_dir: Path,
    test_frame,
    label_params,
    settings,
    shards: int,
    unigram_bits_per_character: float | None,
    classifier=None,
    on_progress: Callable[[str], None] | None = None,
):
    """Evaluate the bundle on `test_frame`, one Ray task per shard; merged as one report.

    Documents, continuation documents and label-control labels are dealt round-robin to
    the shards; every sample's seed derives from its document or label, so the report is the
    same for any number of shards. `on_progress` hears a sentence as each shard finishes.
    Returns the report and the Ray node id each shard ran on, in shard order."""
    import ray

    from aigc.evaluate import continuation_ids, control_labels, merge_shards, summarize

    generator = TextGenerator.load(bundle_dir)
    wanted = continuation_ids(test_frame, settings.continuation_documents)
    labels = control_labels(generator, label_params)
    shards = max(1, min(shards, len(test_frame)))
    frame = test_frame[["id", "text", "label"]].reset_index(drop=True)
    # SPREAD: on a cluster, the shards go to different nodes rather than queue on one
    evaluate_shard = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_evaluate_shard)
    bundle = str(bundle_dir)
    futures = [
        evaluate_shard.remote(
            bundle,
            frame.iloc[index::shards].reset_index(drop=True),
            label_params,
            settings,
            wanted,
            labels[index::shards],
            classifier,
        )
        for index in range(shards)
    ]
    started, finished, pending = time.perf_counter(), {}, list(futures)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        shard, _ = finished[ready[0]] = ray.get(ready[0])
        if on_progress is not None:
            on_progress(
                f"evaluation shard {len(finished)}/{shards} done after "
                f"{time.perf_counter() - started:.0f}s: {len(shard.documents)} documents scored, "
                f"{len(shard.continuations)} continued, {len(shard.label_control)} samples "
                "classified for label control"
            )
    merged = merge_shards(finished[future][0] for future in futures)  # in shard order
    nodes = [finished[future][1] for future in futures]
    return summarize(merged, unigram_bits_per_character=unigram_bits_per_character), nodes


def _evaluate_shard(bundle_dir, documents, label_params, settings, wanted, labels, classifier):
    from aigc.evaluate import evaluate_shard

    torch.set_num_threads(1)
    import ray

    generator = TextGenerator.load(bundle_dir)
    shard = evaluate_shard(
        generator,
        documents,
        label_params,
        settings,
        continuation_ids=wanted,
        labels=labels,
        classifier=classifier,
    )
    return shard, ray.get_runtime_context().get_node_id()
