"""Experiment tracking and model logging with MLflow: the only module of aigc that imports it.

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

Defaults: a sqlite store at `mlflow/mlflow.db` and artifacts under `mlflow/artifacts/`, both
relative to the project root; a remote tracking URI (http://…) is used unchanged and then keeps
artifacts where its server says. MLflow is imported inside the functions that use it, so
importing this module (for `TrackingSettings`, say) creates no client and opens no store.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlparse

from aigc.errors import UserError

if TYPE_CHECKING:
    from types import TracebackType

    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import DatasetInput, Run

    from aigc.config import TrackingParams
    from aigc.generator import TextGenerator
    from aigc.models.image import ImageGenerator

SQLITE_PREFIX = "sqlite:///"
REMOTE_SCHEMES = ("http", "https", "databricks")
# MLflow's limits on one log_batch call and on a param value.
PARAMS_PER_BATCH, METRICS_PER_BATCH, MAX_PARAM_LENGTH = 100, 1000, 6000
MAX_DIGEST_LENGTH = 36  # a DVC directory hash, "<md5>.dir", is exactly 36 characters


def _has_scheme(location: str) -> bool:
    return len(urlparse(location).scheme) > 1  # one letter is a Windows drive, not a scheme


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs go: the `tracking` params section with paths made absolute (`of`)."""

    tracking_uri: str
    artifact_root: str | None
    experiment: str

    @classmethod
    def of(cls, params: TrackingParams, root: str | Path) -> TrackingSettings:
        """The settings of a project's `tracking` section, relative paths taken from `root`."""
        return cls(params.tracking_uri, params.artifact_root, params.experiment).resolve(root)

    def resolve(self, root: str | Path) -> TrackingSettings:
        """The same settings with absolute paths, so workers in any cwd share one store.

        A relative sqlite path and a plain artifact path are taken relative to `root`; the
        folder of the sqlite file is created. With a remote tracking server a relative
        artifact root means nothing to the server, so it is dropped (the server decides)."""
        root = Path(root).resolve()
        tracking_uri = self.tracking_uri
        if tracking_uri.startswith(SQLITE_PREFIX):
            path_text, _, query = tracking_uri[len(SQLITE_PREFIX) :].partition("?")
            if path_text and path_text != ":memory:":
                path = root / path_text  # an absolute path_text stays as it is
                path.parent.mkdir(parents=True, exist_ok=True)
                tracking_uri = SQLITE_PREFIX + str(path) + (f"?{query}" if query else "")
        artifact_root = self.artifact_root
        if artifact_root is not None and not _has_scheme(artifact_root):
            if self.is_remote and not Path(artifact_root).is_absolute():
                artifact_root = None
            else:
                artifact_root = (root / artifact_root).resolve().as_uri()
        return replace(self, tracking_uri=tracking_uri, artifact_root=artifact_root)

    @property
    def experiment_artifact_location(self) -> str | None:
        """`<artifact_root>/<experiment>`: one folder per experiment, as a server would do."""
        if self.artifact_root is None:
            return None
        return f"{self.artifact_root.rstrip('/')}/{quote(self.experiment, safe='')}"

    @property
    def is_remote(self) -> bool:
        return urlparse(self.tracking_uri).scheme in REMOTE_SCHEMES

    @property
    def is_resolved(self) -> bool:
        relative_sqlite = self.tracking_uri.startswith(SQLITE_PREFIX) and not (
            self.tracking_uri[len(SQLITE_PREFIX) :].startswith(("/", ":memory:"))
        )
        plain_path = self.artifact_root is not None and not _has_scheme(self.artifact_root)
        return not relative_sqlite and not plain_path

    def client(self) -> MlflowClient:
        """A client of this store (the registry is the same store)."""
        from mlflow import MlflowClient

        if not self.is_resolved:
            raise ValueError(
                f"{self} has relative paths, which would depend on the current directory; "
                "call settings.resolve(project_root) first"
            )
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)


def ensure_experiment(settings: TrackingSettings) -> str:
    """The id of `settings.experiment`, created (with its artifact location) when missing."""
    from mlflow.exceptions import MlflowException

    client = settings.client()
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        try:
            return client.create_experiment(
                settings.experiment, artifact_location=settings.experiment_artifact_location
            )
        except MlflowException:  # created meanwhile by another process
            experiment = client.get_experiment_by_name(settings.experiment)
            if experiment is None:
                raise
    if experiment.lifecycle_stage == "deleted":
        raise ValueError(
            f"experiment {settings.experiment!r} in {settings.tracking_uri} is deleted; restore "
            f"it (mlflow experiments restore --experiment-id {experiment.experiment_id}) or "
            "choose another experiment name"
        )
    return experiment.experiment_id


# --- what a run records -----------------------------------------------------------------


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


# --- models -----------------------------------------------------------------------------

_GLOBAL_URI_LOCK = threading.Lock()


@contextmanager
def _global_tracking_uri(uri: str) -> Iterator[None]:
    """Parts of MLflow (model logging, models:/ downloads) use the process-wide tracking URI
    whatever client is at hand: point it at `uri` meanwhile (one thread at a time), then
    put the previous value back."""
    import mlflow

    with _GLOBAL_URI_LOCK:
        previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
        mlflow.set_tracking_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(previous)


def _pip_requirements(image: bool) -> list[str]:
    """What the pyfunc needs besides the aigc code logged with it, pinned to what is here:
    a text model its tokenizer library and transformers (the hf family's module), an image
    model Pillow for the PNGs it returns."""
    from importlib.metadata import version

    modality = ("pillow",) if image else ("tokenizers", "transformers", "kernels")
    packages = ("mlflow", "torch", *modality, "pandas", "numpy")
    # "2.13.0+cpu" names a build on PyTorch's own index; the requirement is the version.
    return [f"{name}=={version(name).split('+')[0]}" for name in packages]


def _generator_class(bundle_dir: Path) -> type[TextGenerator] | type[ImageGenerator]:
    """Which generator a bundle folder holds: a text bundle has its tokenizer beside the model,
    an image bundle the model alone (its class names are inside the checkpoint)."""
    from aigc.generator import TOKENIZER_FILE, TextGenerator
    from aigc.models.image import ImageGenerator

    return TextGenerator if (bundle_dir / TOKENIZER_FILE).is_file() else ImageGenerator


def _example_input(generator_class: type, bundle_dir: Path) -> pd.DataFrame:
    """One request, in the columns of the pyfunc that serves `generator_class`."""
    import pandas as pd

    from aigc.generator import TOKENIZER_FILE
    from aigc.models.image import ImageGenerator
    from aigc.text.tokenizer import TextTokenizer

    if generator_class is ImageGenerator:
        classes = ImageGenerator.load(bundle_dir).classes
        return pd.DataFrame({"label": [classes[0]], "n": [1], "seed": [0]})
    labels = TextTokenizer.load(bundle_dir / TOKENIZER_FILE).labels
    return pd.DataFrame(
        {
            "prompt": ["The"],
            "label": [labels[0] if labels else None],
            "max_new_tokens": [8],
            "temperature": [0.8],
            "seed": [0],
        }
    )


def log_generator_model(
    run: TrainingRun,
    bundle_dir: str | Path,
    name: str = "model",
    input_example: bool = True,
    step: int = 0,
) -> str:
    """Log a generator bundle folder (a TextGenerator's or an ImageGenerator's) as a pyfunc
    model of `run`; returns "models:/m-…".

    The model is a models-from-code pyfunc (aigc.serving.pyfunc: GeneratorPyfunc for text,
    ImageGeneratorPyfunc for images, as the bundle holds) with the bundle as artifact
    "bundle", the aigc package as code, pinned pip requirements and a signature. The URI
    returned is the LoggedModel's (MLflow 3); `runs:/<run_id>/<name>` names the same model.
    `input_example` logs a one-row example, which MLflow also runs once to check serving."""
    import mlflow
    from mlflow.models import Model

    import aigc
    from aigc.models.image import ImageGenerator
    from aigc.serving import pyfunc

    bundle_dir = Path(bundle_dir)
    generator_class = _generator_class(bundle_dir)
    image = generator_class is ImageGenerator
    example = _example_input(generator_class, bundle_dir) if input_example else None
    params = run.client.get_run(run.run_id).data.params
    # Created here, in the run's experiment: left to itself, Model.log would create it in the
    # process-wide "current" experiment instead.
    logged = run.client.create_logged_model(
        run.experiment_id, name=name, source_run_id=run.run_id, params=params
    )
    pyfunc_class = "ImageGeneratorPyfunc" if image else "GeneratorPyfunc"
    with tempfile.TemporaryDirectory() as scratch, _global_tracking_uri(run.settings.tracking_uri):
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=mlflow.pyfunc,
            run_id=run.run_id,
            model_id=logged.model_id,
            step=step,
            python_model=str(pyfunc.write_model_code(scratch, pyfunc_class)),
            artifacts={pyfunc.BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[str(Path(aigc.__file__).parent)],
            pip_requirements=_pip_requirements(image),
            signature=pyfunc.image_model_signature() if image else pyfunc.model_signature(),
            input_example=example,
        )
    return info.model_uri


def register_model(
    settings: TrackingSettings,
    model_uri: str,
    name: str,
    alias: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> int:
    """Register `model_uri` as a new version of registered model `name` (created if missing),
    with `tags` set at creation, and with `alias`, point `models:/<name>@<alias>` at it.
    Returns the version number."""
    import mlflow

    client = settings.client()
    # The registry resolves models:/m-… sources with the process-wide tracking URI.
    with _global_tracking_uri(settings.tracking_uri):
        registered = mlflow.register_model(
            model_uri, name, await_registration_for=0, tags=dict(tags or {})
        )
        version = int(registered.version)
    if alias is not None:
        client.set_registered_model_alias(name, alias, str(version))
    return version


class ModelNotFound(UserError):
    """A model URI that names no aigc model in the tracking store (or no model folder)."""


class RunNotFound(UserError):
    """A run id that names no run in the tracking store."""


MODEL_URI_FORMS = (
    "runs:/<run id>/model, models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<id> "
    "or a model folder"
)


def get_run(settings: TrackingSettings, run_id: str) -> Run:
    """The run `run_id` of `settings`' store; RunNotFound, naming the store, when there is none."""
    from mlflow.exceptions import MlflowException

    try:
        return settings.client().get_run(run_id)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise RunNotFound(
            f"no run {run_id!r} in the tracking store {settings.tracking_uri}; `aigc train` "
            "prints the id of the run it makes and `aigc registry show` lists those of the "
            "registered versions (check `tracking.tracking_uri` if the store is the wrong one)"
        ) from None


def _model_uri_mistake(model_uri: str) -> str | None:
    """What is wrong with the form of a runs:/ or models:/ URI; None when the form is fine."""
    scheme, _, rest = model_uri.partition(":")
    rest = rest.lstrip("/")
    if scheme == "runs":
        run_id, _, path = rest.partition("/")
        if not run_id or not path.strip("/"):
            return "a runs:/ URI names a run and the model's path in it: runs:/<run id>/model"
    elif scheme == "models":
        name, alias = rest.partition("@")[::2]
        if "@" in rest and (not name or not alias):
            return "models:/NAME@ALIAS needs both a model name and an alias"
        if "@" not in rest and "/" not in rest and not rest.startswith("m-"):
            return (
                f"models:/{rest} names no version: use models:/{rest or 'NAME'}@champion or "
                f"models:/{rest or 'NAME'}/VERSION"
            )
    return None


def _why_model_not_found(model_uri: str, settings: TrackingSettings) -> str | None:
    """Which part of `model_uri` the store lacks, in a sentence; None when all of it exists."""
    from mlflow.exceptions import MlflowException

    client = settings.client()
    store = f"the tracking store {settings.tracking_uri}"
    scheme, _, rest = model_uri.partition(":")
    rest = rest.lstrip("/")

    if scheme == "runs":
        run_id, _, path = rest.partition("/")
        try:
            get_run(settings, run_id)
        except RunNotFound as error:
            return str(error)
        return f"run {run_id} has no model at {path!r}; aigc logs it at runs:/{run_id}/model"
    if scheme != "models":
        return None
    if rest.startswith("m-") and "/" not in rest and "@" not in rest:
        try:
            client.get_logged_model(rest)
        except MlflowException:
            return (
                f"no logged model {rest!r} in {store}; use the models:/m-… URI that `aigc "
                "train` printed, or a registered version: models:/NAME@champion"
            )
        return None
    name, at, alias = rest.partition("@")
    if not at:
        name, _, version = rest.partition("/")
    registered = [model.name for model in client.search_registered_models()]
    if name not in registered:
        known = (
            f"the registered models are {registered}"
            if registered
            else "no model is registered there yet: `aigc run` trains and registers one"
        )
        return f"no registered model {name!r} in {store}; {known}"
    numbers = sorted(int(item.version) for item in client.search_model_versions(f"name='{name}'"))
    versions = [str(number) for number in numbers]
    if at:
        aliases = client.get_registered_model(name).aliases or {}
        if alias in aliases:
            return None
        named = ", ".join(f"{key} → version {value}" for key, value in sorted(aliases.items()))
        return (
            f"registered model {name!r} has no alias {alias!r} ("
            + (f"its aliases: {named}" if named else "it has no aliases yet")
            + f"; versions: {', '.join(versions)}); `aigc registry show` lists them"
        )
    if version in versions:
        return None
    return (
        f"registered model {name!r} has no version {version!r} (versions: {', '.join(versions)}); "
        "`aigc registry show` lists them"
    )


@contextmanager
def _model_lookup(model_uri: str, settings: TrackingSettings) -> Iterator[None]:
    """MLflow's "not found" errors for `model_uri`, as a ModelNotFound that names the part
    the store lacks; anything else MLflow raises is not the user's doing and stays as it is."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as error:
        # A missing alias is INVALID_PARAMETER_VALUE; everything else missing, the first.
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        why = _why_model_not_found(model_uri, settings)
        if why is None and error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        why = why or f"{error.message} (in the tracking store {settings.tracking_uri})"
        raise ModelNotFound(f"model URI {model_uri!r}: {why}") from None


def _local_model_folder(model_uri: str) -> Path | None:
    """The model folder a plain path or file: URI names; None for a URI MLflow resolves."""
    if _has_scheme(model_uri) and not model_uri.startswith("file:"):
        return None
    folder = Path(urlparse(model_uri).path if _has_scheme(model_uri) else model_uri)
    if not (folder / "MLmodel").is_file():
        raise ModelNotFound(
            f"model URI {model_uri!r}: {folder} is not an MLflow model folder (it has no "
            f"MLmodel file); give a model folder or one of {MODEL_URI_FORMS}"
        )
    return folder


def _store_of(model_uri: str, settings: TrackingSettings | None) -> TrackingSettings:
    """The settings to resolve a runs:/ or models:/ URI with, once its form is checked."""
    mistake = _model_uri_mistake(model_uri)
    if mistake:
        raise ModelNotFound(f"model URI {model_uri!r}: {mistake}")
    if settings is None:
        raise ValueError(f"loading {model_uri} needs the TrackingSettings of its store")
    settings.client()  # checks that the settings are resolved
    return settings


def _bundle_path(model_uri: str, flavors: Mapping[str, Any]) -> str:
    from aigc.serving.pyfunc import BUNDLE_ARTIFACT

    bundle = flavors.get("python_function", {}).get("artifacts", {}).get(BUNDLE_ARTIFACT, {})
    if "path" not in bundle:
        raise ModelNotFound(
            f"model URI {model_uri!r} is not an aigc generator model (no {BUNDLE_ARTIFACT!r} "
            "artifact); log one with aigc.tracking.log_generator_model"
        )
    return bundle["path"]


def check_model_uri(model_uri: str, settings: TrackingSettings) -> None:
    """ModelNotFound unless `model_uri` names an aigc generator model. It reads the MLmodel
    file only, so a command can check its input before it starts a Ray cluster."""
    from mlflow.models import get_model_info

    folder = _local_model_folder(model_uri)
    if folder is not None:
        info = get_model_info(str(folder))
    else:
        settings = _store_of(model_uri, settings)
        with _global_tracking_uri(settings.tracking_uri), _model_lookup(model_uri, settings):
            info = get_model_info(model_uri)
    _bundle_path(model_uri, info.flavors)


def load_generator(
    model_uri: str, settings: TrackingSettings | None = None, device: str = "cpu"
) -> TextGenerator | ImageGenerator:
    """The generator of a logged model, for aigc's own use (evaluation, sampling): a
    TextGenerator or an ImageGenerator, as its bundle holds.

    `model_uri` is `runs:/<run_id>/model`, `models:/m-…`, `models:/<name>@<alias>`,
    `models:/<name>/<version>` (all looked up in `settings`' store), or a local model folder.
    A URI that names nothing there is a ModelNotFound naming the part that is missing."""
    import mlflow
    from mlflow.models import Model

    def from_folder(folder: Path) -> TextGenerator | ImageGenerator:
        flavors = Model.load(str(folder / "MLmodel")).flavors
        bundle_dir = folder / _bundle_path(model_uri, flavors)
        return _generator_class(bundle_dir).load(bundle_dir, device=device)

    folder = _local_model_folder(model_uri)
    if folder is not None:
        return from_folder(folder)
    settings = _store_of(model_uri, settings)
    # download_artifacts takes a tracking_uri, but resolves models:/ URIs with the
    # process-wide one all the same.
    with (
        tempfile.TemporaryDirectory() as scratch,
        _global_tracking_uri(settings.tracking_uri),
        _model_lookup(model_uri, settings),
    ):
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=scratch)
        return from_folder(Path(local))
