"""Experiment tracking and model logging with MLflow.

A run is opened through an `MlflowClient` bound to explicit settings, never through MLflow's
global "active run", so it works the same in a Ray rank-0 worker, in a driver, and with several
runs in one process:

    settings = TrackingSettings.of(params.tracking, project_root)   # absolute paths
    dataset = DatasetInfo("labeled", digest=dvc_hash, source="data/labeled")
    with TrainingRun.start(settings, "gpt-small", params, run_tags(...), dataset) as run:
        run.log_metrics({"train.loss": 2.3}, step=100)
        model_uri = log_generator_model(run, bundle_dir)   # "models:/m-…"
    # a restarted worker continues the same run: TrainingRun.resume(settings, run_id)

    generator = load_generator("models:/aigc-text@champion", settings)   # or an ImageGenerator

Four modules: `settings` (where runs go), `runs` (what a run records), `models` (a generator
logged and registered as a pyfunc), `lookup` (a model URI back to a generator). MLflow is
imported in this package, in `aigc.registry.registry` (aliases, versions, decisions) and in
`aigc.serving.pyfunc` (the model MLflow serves), nowhere else in the library
(tests/unit/test_layers.py holds it); always inside the functions that use it, so importing
these modules creates no client and opens no store.

Defaults: a sqlite store at `mlflow/mlflow.db` and artifacts under `mlflow/artifacts/`, both
relative to the project root; a remote tracking URI (http://…) is used unchanged and then keeps
artifacts where its server says.
"""

from aigc.tracking.lookup import (
    MODEL_URI_FORMS,
    ModelNotFound,
    RunNotFound,
    check_model_uri,
    get_run,
    load_generator,
)
from aigc.tracking.models import log_generator_model, register_model
from aigc.tracking.runs import (
    DatasetInfo,
    TrainingRun,
    flatten_params,
    git_commit,
    hash_params,
    run_tags,
    source_tags,
)
from aigc.tracking.settings import (
    REMOTE_SCHEMES,
    SQLITE_PREFIX,
    TrackingSettings,
    ensure_experiment,
)

__all__ = [
    "MODEL_URI_FORMS",
    "REMOTE_SCHEMES",
    "SQLITE_PREFIX",
    "DatasetInfo",
    "ModelNotFound",
    "RunNotFound",
    "TrackingSettings",
    "TrainingRun",
    "check_model_uri",
    "ensure_experiment",
    "flatten_params",
    "get_run",
    "git_commit",
    "hash_params",
    "load_generator",
    "log_generator_model",
    "register_model",
    "run_tags",
    "source_tags",
]
