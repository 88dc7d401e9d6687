"""From a model URI (runs:/, models:/, a folder) to a loaded generator, or one clear error."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from aigc.errors import UserError
from aigc.tracking.models import _generator_class
from aigc.tracking.settings import TrackingSettings, _global_tracking_uri, _has_scheme

if TYPE_CHECKING:
    from mlflow.entities import Run

    from aigc.image.generator import ImageGenerator
    from aigc.text.generator import TextGenerator


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
