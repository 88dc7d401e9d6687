"""Ray in aigc: the only package of the library that imports `ray` (STYLE.md, "The layers").

    connect(params.train.ray, paths.work)                 # cluster: a local Ray, or a cluster
    outcome = train_on_ray(job, params.train.ray, run=RunLink(...), storage=..., name=...,
                           model_dir=...)                 # train: Ray Train's driver
    report, nodes = evaluate_on_ray(bundle_dir, test_frame, ...)   # evaluate: text, sharded

One module per concern: `cluster` (which Ray, and its token), `train` (the driver, and the
translation of lost workers), `worker` (what every worker runs), `checkpoints` (the run's
storage folder), `progress` (rank 0's progress queue to the driver), `evaluate` (text
evaluation shards). Importing any of them starts nothing: `ray` is imported inside the
functions that use it.
"""

from aigc.ray.checkpoints import load_training_state, resume_state, write_checkpoint
from aigc.ray.cluster import connect, local_token, wants_gpu
from aigc.ray.evaluate import EVALUATION_NODES_TAG, evaluate_on_ray
from aigc.ray.train import TrainOutcome, WorkersLostError, train_on_ray, workers_lost
from aigc.ray.worker import NODES_TAG, RunLink

__all__ = [
    "EVALUATION_NODES_TAG",
    "NODES_TAG",
    "RunLink",
    "TrainOutcome",
    "WorkersLostError",
    "connect",
    "evaluate_on_ray",
    "load_training_state",
    "local_token",
    "resume_state",
    "train_on_ray",
    "wants_gpu",
    "workers_lost",
    "write_checkpoint",
]
