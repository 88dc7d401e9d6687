"""What a run records: its params, tags, dataset input, metrics and artifacts (`TrainingRun`)."""

from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aigc.tracking.settings import TrackingSettings, ensure_experiment

if TYPE_CHECKING:
    from types import TracebackType

    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, Run


# MLflow's limits on one log_batch call and on a param value.
PARAMS_PER_BATCH, METRICS_PER_BATCH, MAX_PARAM_LENGTH = 100, 1000, 6000
MAX_DIGEST_LENGTH = 36  # a DVC directory hash, "<md5>.dir", is exactly 36 characters


@dataclass(frozen=True)
class DatasetInfo:
    """A data version as an MLflow dataset input: the DVC hash is the digest.

    `source` is a path or URI (http, s3, …); `schema` maps column names to MLflow type names
    ("string", "long", "double", …); `profile` is any JSON-able summary, such as row counts."""

    name: str
    digest: str
    source: str
    schema: Mapping[str, str] | None = None
    profile: Mapping[str, Any] | None = None
    context: str = "training"

    def __post_init__(self) -> None:
        if not self.digest or len(self.digest) > MAX_DIGEST_LENGTH:
            raise ValueError(
                f"dataset {self.name!r}: digest {self.digest!r} must be 1 to "
                f"{MAX_DIGEST_LENGTH} characters (MLflow's limit); pass the DVC hash"
            )


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"model": {"n_layer": 2}} -> {"model.n_layer": "2"}; lists and scalars become text."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_params(value, prefix=f"{name}."))
        else:
            flat[name] = value if isinstance(value, str) else json.dumps(value, default=str)
    return flat


def hash_params(params: Mapping[str, Any]) -> str:
    """A short hash of the flattened params, the same for the same values in any key order."""
    canonical = json.dumps(flatten_params(params), sort_keys=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


def git_commit(root: str | Path = ".") -> str:
    """HEAD's commit at `root`, with "+dirty" when tracked files changed; "unknown" outside git."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, check=True, capture_output=True, text=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def run_tags(
    data_version: str,
    git_commit: str,
    params_hash: str,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The tags every training run carries; the clean commit also goes to MLflow's own tag."""
    tags = {
        "aigc.data_version": data_version,
        "aigc.git_commit": git_commit,
        "aigc.params_hash": params_hash,
    }
    if git_commit != "unknown":
        tags["mlflow.source.git.commit"] = git_commit.removesuffix("+dirty")
    return {**tags, **{key: str(value) for key, value in (extra or {}).items()}}


def source_tags(argv: Sequence[str] | None = None) -> dict[str, str]:
    """MLflow's "Source" of a run: the command that opened it (`aigc run`, `aigc data refresh`,
    `pytest`, `prefect.engine` under a Prefect worker), as a job.

    Runs are created through a client, which, unlike `mlflow.start_run`, sets no source: the
    run page showed "Source —". The words up to the first option name the command; option
    values (`--set ...`) are left out, they are in the run's params."""
    argv = sys.argv if argv is None else argv
    program = Path(argv[0]) if argv and argv[0] else Path("python")
    if program.suffix == ".py" and "site-packages" in program.parts:  # python -m package.module
        inside = program.parts[program.parts.index("site-packages") + 1 :]
        name = ".".join(inside).removesuffix(".py").removesuffix(".__main__")
    elif program.name == "__main__.py":
        name = program.parent.name
    else:
        name = program.name
    words = []
    for word in argv[1:]:
        if word.startswith("-"):
            break
        words.append(word)
    return {"mlflow.source.name": " ".join([name, *words]), "mlflow.source.type": "JOB"}


def _dataset_input(dataset: DatasetInfo) -> DatasetInput:
    """`dataset` as MLflow's DatasetInput: a MetaDataset (metadata only) with our digest."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.exceptions import MlflowException
    from mlflow.types import ColSpec, Schema
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    try:
        with warnings.catch_warnings():
            # "" and "file" both map to the local source: MLflow warns that it had to choose.
            warnings.filterwarnings("ignore", message=".*can be interpreted in multiple ways")
            source = resolve_dataset_source(dataset.source)
    except MlflowException as error:
        raise ValueError(
            f"dataset {dataset.name!r}: MLflow cannot use {dataset.source!r} as a source; "
            "give a local path or a URI such as https://…, s3://…"
        ) from error
    columns = []
    for name, kind in (dataset.schema or {}).items():
        try:
            columns.append(ColSpec(kind, name))
        except MlflowException as error:
            raise ValueError(
                f"dataset {dataset.name!r}, schema column {name!r}: {kind!r} is not an MLflow "
                "type; use string, long, integer, double, float, boolean, binary or datetime"
            ) from error
    schema = Schema(columns) if columns else None
    fields = MetaDataset(source, name=dataset.name, digest=dataset.digest, schema=schema).to_dict()
    entity = Dataset(
        name=fields["name"],
        digest=fields["digest"],
        source_type=fields["source_type"],
        source=fields["source"],
        schema=fields.get("schema"),
        profile=json.dumps(dict(dataset.profile), default=str) if dataset.profile else None,
    )
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, dataset.context)])


class TrainingRun:
    """One MLflow run, written through its own client. Open with `start` or `resume`.

    As a context manager it ends the run FINISHED, or FAILED when the block raises."""

    def __init__(self, settings: TrackingSettings, client: MlflowClient, run: Run) -> None:
        self.settings = settings
        self.client = client
        self.run_id: str = run.info.run_id
        self.experiment_id: str = run.info.experiment_id
        self.artifact_uri: str = run.info.artifact_uri
        self._ended = False

    @classmethod
    def start(
        cls,
        settings: TrackingSettings,
        run_name: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, str] | None = None,
        dataset: DatasetInfo | None = None,
    ) -> TrainingRun:
        """Create a run in `settings.experiment` with params (flattened), tags and dataset.

        The run carries MLflow's source tags (`source_tags`: the command that opened it)."""
        experiment_id = ensure_experiment(settings)
        client = settings.client()
        all_tags = {"mlflow.user": getpass.getuser(), **source_tags(), **(tags or {})}
        run = cls(
            settings, client, client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        )
        try:
            run.log_params(params or {})
            if dataset is not None:
                run.log_dataset(dataset)
        except BaseException:
            run.end("FAILED")
            raise
        return run

    @classmethod
    def resume(cls, settings: TrackingSettings, run_id: str) -> TrainingRun:
        """Continue an existing run (a worker restarted after a failure); it is RUNNING again."""
        from mlflow.exceptions import MlflowException

        client = settings.client()
        try:
            run = client.get_run(run_id)
        except MlflowException as error:
            raise ValueError(
                f"no run {run_id!r} in {settings.tracking_uri}; resume needs the run id the "
                "first attempt printed, against the same tracking store"
            ) from error
        if run.info.lifecycle_stage == "deleted":
            raise ValueError(f"run {run_id} is deleted; restore it in MLflow or start a new run")
        if run.info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return cls(settings, client, run)

    def __enter__(self) -> TrainingRun:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.end("FINISHED")
        else:
            self.end("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params flattened with dots. MLflow params are write-once: re-logging the same value
        is fine, a different value for a logged key is an error."""
        from mlflow.entities import Param

        flat = flatten_params(params)
        for key, value in flat.items():
            if len(value) > MAX_PARAM_LENGTH:
                raise ValueError(
                    f"param {key!r} is {len(value)} characters, over MLflow's "
                    f"{MAX_PARAM_LENGTH}; log it as an artifact with log_dict instead"
                )
        items = [Param(key, value) for key, value in flat.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """All `metrics` at `step`, in as few requests as MLflow allows."""
        self.log_metric_steps([(metrics, step)])

    def log_metric_steps(self, records: list[tuple[Mapping[str, float], int]]) -> None:
        """Metrics of several steps ([(metrics, step), ...]) in as few requests as possible."""
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        items = [
            Metric(key, float(value), timestamp, step)
            for metrics, step in records
            for key, value in metrics.items()
        ]
        for start in range(0, len(items), METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + METRICS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Add or overwrite run tags (e.g. the final checkpoint step)."""
        from mlflow.entities import RunTag

        items = [RunTag(key, str(value)) for key, value in tags.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[start : start + PARAMS_PER_BATCH])

    def log_dataset(self, dataset: DatasetInfo) -> None:
        """Record a data version as an input of this run (the UI's "Datasets used")."""
        self.client.log_inputs(self.run_id, datasets=[_dataset_input(dataset)])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """A file, or a folder's content, under `artifact_path` in the run's artifacts."""
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)
        else:
            raise FileNotFoundError(f"cannot log {path} as an artifact: no such file or folder")

    def log_image(self, path: str | Path, artifact_path: str | None = "images") -> None:
        """An image file already on disk (a PNG report, say), shown by the UI's previewer."""
        self.log_artifact(path, artifact_path)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """A matplotlib figure, saved as `artifact_file` (e.g. "plots/loss.png")."""
        self.client.log_figure(self.run_id, figure, artifact_file)

    def log_text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def log_dict(self, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        """JSON or YAML, chosen by the suffix of `artifact_file`."""
        self.client.log_dict(self.run_id, dict(dictionary), artifact_file)

    def end(self, status: str = "FINISHED") -> None:
        """Mark the run FINISHED, FAILED or KILLED; a second call does nothing."""
        if status not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"status {status!r}: use FINISHED, FAILED or KILLED")
        if not self._ended:
            self.client.set_terminated(self.run_id, status=status)
            self._ended = True
