"""The `aigc` typer app and what every verb module shares: the app objects, the option
types, loading the project and its params, the stores a model or the registry is looked up
in, and `main()`, which prints a UserError as one line and exits 2."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from aigc.config import Params, load_params
from aigc.errors import UserError
from aigc.paths import NotWritable, ProjectPaths
from aigc.settings import apply_offline_defaults
from cli.output import console

if TYPE_CHECKING:
    from aigc.config import TrackingParams
    from aigc.modality import Modality
    from aigc.tracking import TrackingSettings

app = typer.Typer(help="aigc: a training pipeline for generative models.", no_args_is_help=True)
data_app = typer.Typer(help="The data half: collect, clean, label, version.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(
    help="The model registry: versions, aliases, decisions.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")
stack_app = typer.Typer(
    help="Real servers on 127.0.0.1 for development and tests: PostgreSQL, S3, MLflow, Prefect.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")


ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="params file (default: ./params.yaml)")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a parameter: section.key=value (repeatable)"),
]


# A modality by name (aigc.modality); an unknown one is one line naming those there are.
ModalityOption = Annotated[str, typer.Option("--modality", help="which data: text or image")]
OnlyOption = Annotated[
    list[str] | None, typer.Option(help="one modality: text or image [default: both]")
]


def _params(params_file: Path | None, overrides: list[str] | None) -> Params:
    return load_params(params_file, overrides or [])


def _root() -> Path:
    return Path.cwd()


def _project(
    params_file: Path | None, overrides: list[str] | None, writes: bool = True
) -> tuple[ProjectPaths, Params]:
    """The project in the working directory and its params, for a command that works on a
    project: outside one (no params.yaml, no dvc.yaml), or where a command that `writes`
    cannot, it says so before anything is written."""
    paths = ProjectPaths.at(_root()).require_project()
    params = _params(params_file, overrides)
    if writes:
        paths.require_writable()
    return paths, params


def _modality_project(
    modality: str, params_file: Path | None, overrides: list[str] | None
) -> tuple[Modality, ProjectPaths, Params]:
    """`--modality` checked (an unknown one is one line), then `_project`."""
    from aigc.modality import get_modality

    chosen = get_modality(modality)
    return (chosen, *_project(params_file, overrides))


def _existing_folder(option: str, path: Path | None) -> None:
    """A UserError unless the folder that `path` (an output) goes into exists: aigc makes
    no folders that the user named by mistake."""
    if path is not None and not path.absolute().parent.is_dir():
        raise UserError(
            f"{option} {path}: the folder {path.absolute().parent} does not exist; create it "
            "first or choose another path"
        )


def _missing_store(tracking: TrackingParams, root: Path) -> Path | None:
    """The sqlite file `tracking` names, if it does not exist; None if it does, or is a server."""
    from aigc.tracking import SQLITE_PREFIX

    database = tracking.tracking_uri.removeprefix(SQLITE_PREFIX).partition("?")[0]
    if not tracking.tracking_uri.startswith(SQLITE_PREFIX) or database in ("", ":memory:"):
        return None
    return None if (root / database).is_file() else root / database


def _model_store(model_uri: str, tracking: TrackingParams, root: Path) -> TrackingSettings | None:
    """The store that a runs:/ or models:/ URI is looked up in; None for a model folder.

    Looking a model up only reads a store: one that does not exist is an error naming it,
    where MLflow would create an empty sqlite store (and its folder) to look in."""
    from urllib.parse import urlparse

    from aigc.tracking import TrackingSettings

    if len(urlparse(model_uri).scheme) <= 1 or model_uri.startswith("file:"):
        return None  # a model folder (one letter: a Windows drive)
    missing = _missing_store(tracking, root)
    if missing:
        raise UserError(
            f"model URI {model_uri!r}: there is no tracking store at {missing} (tracking."
            f"tracking_uri {tracking.tracking_uri!r}) to look it up in; point tracking."
            "tracking_uri at the store that holds the model, or train and register one here "
            "with `aigc run`"
        )
    return TrackingSettings.of(tracking, root)


def _registry_store(tracking: TrackingParams, root: Path) -> TrackingSettings:
    """The store the registry commands read. They work anywhere, but outside a project only
    on a store that exists: they would create an empty one in whatever folder they ran in."""
    from aigc.tracking import TrackingSettings

    missing = _missing_store(tracking, root)
    if missing and not ProjectPaths.at(root).is_project:
        raise UserError(
            f"{root} is not an aigc project and there is no tracking store at {missing}. Fix: "
            "cd into the project's folder, or name the store that holds the registry: "
            "--set tracking.tracking_uri=sqlite:///PATH or http://HOST:PORT"
        )
    return TrackingSettings.of(tracking, root)


def _check_inputs(paths: ProjectPaths, params: Params, modalities: Iterable[str]) -> None:
    """What each modality trains from is there before anything starts (a fine-tune's base
    folder): one line, exit 2, when it is not."""
    from aigc.modality import get_modality

    for chosen in map(get_modality, modalities):
        if chosen.check_inputs is not None:
            chosen.check_inputs(params, paths.root)


@app.callback()
def _root_options(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            envvar="AIGC_PROFILE",
            help="servers to use: `stack` (from `aigc stack up`) or a profile file",
        ),
    ] = None,
) -> None:
    if profile:
        from aigc.stack.profile import apply_profile, resolve_profile
        from aigc.stack.stack import require_up

        path = resolve_profile(profile, _root())
        if profile == "stack":
            require_up(_root())
        apply_profile(path)


class _UserErrorRecords(logging.Filter):
    """Drops Prefect's record of a flow or task run that raised a UserError (or an OSError
    of writing, which main() reports as NotWritable).

    Prefect logs the exception that ends a run with its traceback; for a UserError that is a
    traceback where the CLI promises one message, which main() prints. The run still ends
    Failed with the message as its state, and Prefect logs that state in one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        fixable = isinstance(error, UserError) or NotWritable.of(error) is not None
        return not fixable or bool(os.environ.get("AIGC_TRACEBACK"))


def main(args: list[str] | None = None) -> None:
    """The console script; `args` instead of sys.argv[1:] runs it in process (the tests)."""
    apply_offline_defaults()
    for name in ("prefect.flow_runs", "prefect.task_runs"):  # the loggers of Prefect's engines
        logger = logging.getLogger(name)
        if not any(isinstance(item, _UserErrorRecords) for item in logger.filters):
            logger.addFilter(_UserErrorRecords())
    try:
        app(args=args, prog_name="aigc")
    except (UserError, OSError) as raised:
        # An OSError of writing (a read-only folder, a full disk) is the machine's, not a bug.
        error = raised if isinstance(raised, UserError) else NotWritable.of(raised)
        if error is None or os.environ.get("AIGC_TRACEBACK"):
            raise
        # soft_wrap: the message stays one line, however narrow the terminal (or a pipe).
        console.print(f"[bold red]error:[/] {escape(str(error))}", highlight=False, soft_wrap=True)
        sys.exit(2)
