"""Where runs go: the tracking store's settings, made absolute, and its experiment."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlparse

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from aigc.config import TrackingParams


SQLITE_PREFIX = "sqlite:///"
REMOTE_SCHEMES = ("http", "https", "databricks")


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
