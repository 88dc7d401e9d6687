"""The `aigc` command line: the outermost layer (cli → flows → tasks → src/aigc).

    aigc data collect|clean|label|version   one data stage (clean and label are what DVC runs)
    aigc data refresh    the data flow in Prefect: collect → clean → label → version, text
                         then images
    aigc data status     the current data version, its counts, and the earlier versions
    aigc data checkout   restore a data version from the DVC cache or remote
    aigc data commit     git-commit exactly the files that name the data versions
    (`--modality image` points collect, clean, label, version, status and checkout at the
    image data: data/image/, the DVC stages image_clean and image_label, image.* params)
    aigc train           the train stage on the current data version (Ray), then evaluate
    aigc evaluate        the evaluate stage: a logged model on the test split
    aigc promote         the promote stage: the gate decides on the current challenger
    aigc generate        sample text, or a grid of images, from a logged model
    aigc export MODEL_URI OUT_DIR   a text model as a Hugging Face folder (transformers)
    aigc run             the whole pipeline (change-aware), with a promotion decision
    aigc schedule        serve `aigc run` as a Prefect deployment on a cron schedule
    aigc registry show|history|promote|rollback   versions, decisions, manual overrides
    aigc reproduce NAME/VERSION   rebuild a model from its data version, compare the metrics
    aigc params          print the effective configuration (params.yaml + --set + defaults)
    aigc stack up|status|down   real servers on 127.0.0.1: PostgreSQL, S3, MLflow, Prefect

Every command takes `--params FILE` and repeatable `--set section.key=value`; none writes
params.yaml. `aigc --profile stack COMMAND` (or `--profile FILE`) runs it against servers: the
profile's variables are exported and its params overlay is layered under the --set overrides.
Errors that a user can fix (`aigc.errors.UserError`) are printed as one message naming the
input and the fix, exit code 2.
"""

from __future__ import annotations

import contextvars
import enum
import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from aigc import runtime
from aigc.config import Params, load_params
from aigc.errors import UserError
from aigc.paths import NotWritable, ProjectPaths
from aigc.settings import apply_offline_defaults

if TYPE_CHECKING:
    from collections.abc import Callable

    from aigc.config import ImageEvaluateParams, ImageTrainParams, TrackingParams, TrainParams
    from aigc.models.image import ImageGenerator
    from aigc.tracking import TrackingSettings

console = Console()
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


class Modality(enum.StrEnum):
    text = "text"
    image = "image"


ModalityOption = Annotated[Modality, typer.Option("--modality", help="which data")]
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


@data_app.command("collect")
def data_collect(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = Modality.text,
) -> None:
    """Read every configured source into a new immutable raw snapshot."""
    from aigc.stages import image
    from aigc.stages.collect import collect

    paths, params = _project(params_file, overrides)
    collected = (image.collect if modality == "image" else collect)(paths, params)
    table = Table("source", "type", "records", "flagged", "refused", "carried", "errors", "s")
    for source in collected.report["sources"]:
        flagged = ", ".join(f"{key} {value}" for key, value in source["flagged"].items())
        table.add_row(
            source["name"],
            source["type"],
            str(source["records"]),
            flagged or "-",
            "\n".join(entry["path"] for entry in source.get("refused", [])) or "-",
            str(source.get("carried_forward", 0)),
            "\n".join(source["errors"]) or "-",
            f"{source['seconds']:.1f}",
        )
    console.print(table)
    snapshot = collected.snapshot
    if snapshot.new:
        console.print(f"wrote [bold]{snapshot.path}[/] ({snapshot.records} records)")
    else:
        console.print(f"sources unchanged: newest snapshot {snapshot.path.name} still holds")
    if collected.raw_hash:
        raw = "data/image/raw" if modality == "image" else "data/raw"
        console.print(f"{raw} tracked by DVC: {collected.raw_hash}")


@data_app.command("clean")
def data_clean(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = Modality.text,
) -> None:
    """Clean the newest raw snapshot; every removed record goes to the quarantine."""
    from aigc.stages import image
    from aigc.stages.clean import clean

    stage = image.clean if modality == "image" else clean
    cleaned = stage(*_project(params_file, overrides))
    console.print(
        f"clean: {cleaned.records} records kept, {cleaned.quarantined} quarantined"
        + "".join(f"\n  {rule}: {count}" for rule, count in cleaned.quarantined_by_rule.items())
    )


@data_app.command("label")
def data_label(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = Modality.text,
) -> None:
    """Label the clean records (text: by topic; images: their class) and split them."""
    from aigc.stages import image
    from aigc.stages.label import label

    stage = image.label if modality == "image" else label
    labeled = stage(*_project(params_file, overrides))
    _print_counts(labeled.counts)


@data_app.command("version")
def data_version(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = Modality.text,
) -> None:
    """Push the labeled dataset to the DVC remote and record it as a data version."""
    from aigc.data.collect import latest_snapshot
    from aigc.stages import image
    from aigc.stages.label import labeled_dataset
    from aigc.stages.version import version

    paths, params = _project(params_file, overrides)
    where = image.ImagePaths.of(paths) if modality == "image" else paths
    stage = image.version if modality == "image" else version
    snapshot = latest_snapshot(where.raw)
    if snapshot is None or not (where.reports / "label.json").exists():
        raise UserError("nothing to version yet: run `aigc data refresh` first")
    outcome = stage(paths, params, snapshot.name, labeled_dataset(where).counts)
    state = "new" if outcome.new else "unchanged"
    console.print(f"data version [bold]{outcome.dataset.version}[/] ({state})")
    if outcome.remote:
        console.print(f"pushed to {outcome.remote}")


@data_app.command("refresh")
def data_refresh(
    only: OnlyOption = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Run the data flow in Prefect: collect → clean → label → version, text then images."""
    from aigc.config import chosen_modalities

    paths, params = _project(params_file, overrides)
    chosen = chosen_modalities(only)
    started = time.perf_counter()
    wait_for_api = _start_prefect_api(params, runtime.start(paths.work))
    from flows.data_refresh import data_refresh as flow

    wait_for_api()
    versions = flow(root=str(paths.root), params=params, modalities=chosen)
    seconds = time.perf_counter() - started
    for name, dataset in (("text", versions.text), ("image", versions.image)):
        if dataset is None:
            continue
        console.print(f"\n[bold green]{name} data version {dataset.version[:12]}[/]")
        _print_counts(dataset.counts)
    console.print(f"data refresh took {seconds:.0f}s")
    _print_share_hint(paths.root)


@data_app.command("status")
def data_status(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = Modality.text,
) -> None:
    """Show the current data version, counts per split and label, and earlier versions."""
    from aigc.data.version import (
        IMAGE,
        TEXT,
        VersionNotFound,
        current_version,
        history,
        status,
    )

    paths, _ = _project(params_file, overrides, writes=False)  # checks the params too
    root = paths.root
    kind = IMAGE if modality == "image" else TEXT
    versions = history(root, kind)
    try:
        current = current_version(root, kind)
    except VersionNotFound as error:
        console.print(f"no data version yet ({error})")
        raise typer.Exit(1) from None
    entry = next((known for known in versions if known.version == current), None)
    console.print(f"current {modality.value} data version: [bold]{current}[/]")
    stale = status(root)
    console.print(
        "dvc status: up to date" if not stale else f"dvc status: [yellow]changed[/] {stale}"
    )
    if entry:
        console.print(f"built {entry.created_at} from {entry.raw_snapshot}")
        _print_counts(entry.counts)
    table = Table("version", "created", "raw snapshot", "records", title="data versions")
    for known in reversed(versions):
        marker = " (current)" if known.version == current else ""
        table.add_row(
            known.short + marker,
            known.created_at,
            known.raw_snapshot,
            str(known.counts.get("records", "")),
        )
    console.print(table)


@data_app.command("checkout")
def data_checkout(
    version: Annotated[str, typer.Argument(help="data version: full hash or unique prefix")],
    out: Annotated[
        Path | None, typer.Option(help="restore into this folder (default: data/labeled)")
    ] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = Modality.text,
) -> None:
    """Restore exactly that data version from the DVC cache, or the remote."""
    from aigc.data.version import IMAGE, TEXT, checkout_version, configure_remote

    paths, params = _project(params_file, overrides)
    kind = IMAGE if modality == "image" else TEXT
    remote = params.version.remote_name
    configure_remote(paths.root, remote, params.version.remote_url)
    dest = checkout_version(
        paths.root, version, out or kind.labeled_path(paths.root), kind, remote
    )
    console.print(f"restored data version {version} into {dest}")


@data_app.command("commit")
def data_commit() -> None:
    """Commit to git exactly the files that name the data versions (dvc.lock, data/*.dvc,
    versions.jsonl) where they changed, so that a clone can pull and reproduce them."""
    from aigc.data.share import commit_data_version

    paths = ProjectPaths.at(_root()).require_project()
    made = commit_data_version(paths.root)
    files = ", ".join(str(path) for path in made.files)
    console.print(
        f"committed {files} as {made.commit[:12]}: {made.subject}", highlight=False, soft_wrap=True
    )


def _print_share_hint(root: Path) -> None:
    """What to commit to share the data versions; nothing when git's HEAD has them."""
    from aigc.data.share import share_hint

    hint = share_hint(root)
    if hint:
        console.print(hint, highlight=False, markup=False, soft_wrap=True)


@app.command("train")
def train(
    evaluate: Annotated[
        bool, typer.Option(help="then run the evaluate stage into the same MLflow run")
    ] = True,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Train a generator on the current data version (Ray), tracked in MLflow; then evaluate."""
    from aigc.stages.evaluate import evaluate as evaluate_stage
    from aigc.stages.train import train as train_stage
    from aigc.stages.version import current_dataset

    paths, params = _project(params_file, overrides)
    _check_base_model(paths, params)
    runtime.start(paths.work)  # first ends what a killed run left running
    dataset = current_dataset(paths)
    with _training_progress(params.train) as on_progress:
        trained = train_stage(paths, params, dataset, on_progress=on_progress)
    _print_trained(trained)
    if evaluate:
        evaluation = evaluate_stage(
            paths, params, trained.model_uri, dataset, trained.run_id, trained.bundle_dir
        )
        _print_evaluation(evaluation)


@app.command("evaluate")
def evaluate(
    model_uri: Annotated[str, typer.Option("--model-uri", help="runs:/…, models:/NAME@ALIAS")],
    out: Annotated[Path | None, typer.Option(help="write the report JSON here")] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Evaluate a logged model on the test split of the current data version."""
    from aigc.stages.evaluate import evaluate as evaluate_stage
    from aigc.stages.version import current_dataset
    from aigc.tracking import check_model_uri

    paths, params = _project(params_file, overrides)
    _existing_folder("--out", out)
    check_model_uri(model_uri, _model_store(model_uri, params.tracking, paths.root))  # before Ray
    evaluation = evaluate_stage(paths, params, model_uri, current_dataset(paths))
    _print_evaluation(evaluation)
    if out:
        shutil.copytree(evaluation.folder, out, dirs_exist_ok=True)
        console.print(f"metrics and per-document scores written to {out}/")


@app.command("generate")
def generate(
    model_uri: Annotated[str, typer.Option("--model-uri", help="runs:/…, models:/NAME@ALIAS")],
    label: Annotated[
        list[str] | None,
        typer.Option(
            help="topic to condition on; for an image model a class, repeatable: one grid row "
            "each [default: every class]"
        ),
    ] = None,
    prompt: Annotated[str, typer.Option(help="text to continue")] = "",
    count: Annotated[
        int | None,
        typer.Option("-n", min=1, help="how many samples (per label for images) [default: 3]"),
    ] = None,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    max_new_tokens: Annotated[
        int | None,
        typer.Option(min=1, help="length of each sample [default: evaluate.sample_tokens]"),
    ] = None,
    temperature: Annotated[
        float | None, typer.Option(min=0.0, help="0: greedy [default: evaluate.temperature]")
    ] = None,
    guidance: Annotated[
        float | None,
        typer.Option(min=0.0, help="image ddpm: classifier-free guidance [default: the model's]"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="image models: the grid PNG to write")] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Generate text, or a grid of images (one row per label), with a logged model."""
    from aigc.models.image import ImageGenerator
    from aigc.tracking import load_generator

    _existing_folder("--out", out)
    params = _params(params_file, overrides)
    generator = load_generator(model_uri, _model_store(model_uri, params.tracking, _root()))
    count = 3 if count is None else count
    if isinstance(generator, ImageGenerator):
        _refuse_options(
            "an image model", prompt=prompt, max_new_tokens=max_new_tokens, temperature=temperature
        )
        labels = label or list(generator.classes)
        _generate_grid(generator, labels, count, seed, guidance, out, params.image.evaluate)
        return
    _refuse_options("a text model", guidance=guidance, out=out)
    if label and len(label) > 1:
        raise UserError(f"--label given {len(label)} times: a text model takes one topic")
    topic = label[0] if label else None
    texts = generator.generate(
        [prompt] * count,
        [topic] * count,
        max_new_tokens=params.evaluate.sample_tokens if max_new_tokens is None else max_new_tokens,
        temperature=params.evaluate.temperature if temperature is None else temperature,
        top_k=params.evaluate.top_k,
        seed=seed,
    )
    for index, text in enumerate(texts):
        console.rule(f"sample {index} · {topic or 'unconditioned'} · seed {seed}")
        console.print(prompt + text, highlight=False, markup=False)


def _refuse_options(kind: str, **options: object) -> None:
    """A UserError naming the options given that `kind` of model has no use for."""
    given = [
        f"--{name.replace('_', '-')}" for name, value in options.items() if value not in (None, "")
    ]
    if given:
        raise UserError(f"{', '.join(given)}: not an option for {kind}; leave it out")


def _generate_grid(
    generator: ImageGenerator,
    labels: list[str],
    count: int,
    seed: int,
    guidance: float | None,
    out: Path | None,
    look: ImageEvaluateParams,
) -> None:
    """Write a grid PNG of `count` samples of each label, one row per label, in their order,
    with the tile scale and gap of the evaluation's grid (`look`)."""
    import numpy as np

    from aigc.evaluate.image_grid import write_sample_grid
    from aigc.models.image import UnknownClass
    from aigc.serving.pyfunc import sample_request

    if out is None:
        raise UserError("--out: an image model writes a grid of samples; name the PNG to write")
    for label in labels:
        try:
            generator.class_index(label)
        except UnknownClass as error:
            raise UserError(f"--label {label!r}: {error}") from None
    # A row is the same request whatever the other rows are: `--label 7` alone gives row 0 here
    # and the pyfunc's answer to (label 7, n, seed).
    samples = np.concatenate(
        [sample_request(generator, label, count, seed, guidance) for label in labels]
    )  # (rows * count, H, W, C)
    write_sample_grid(
        samples,
        np.repeat(np.arange(len(labels)), count),  # (rows * count,) the row of each sample
        out,
        classes=len(labels),
        per_class=count,
        scale=look.grid_scale,
        gap=look.grid_gap,
    )
    console.print(f"wrote {out}: {count} samples of each of {', '.join(labels)}, seed {seed}")


@app.command("export")
def export(
    model_uri: Annotated[
        str, typer.Argument(help="runs:/…, models:/NAME@ALIAS or a model folder")
    ],
    out_dir: Annotated[Path, typer.Argument(help="the folder to write: new, or empty")],
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Write a text model as a Hugging Face folder: model, tokenizer, generation config, card."""
    from aigc.export import check_out_dir, export_generator
    from aigc.tracking import load_generator

    check_out_dir(out_dir)  # before the model is fetched
    params = _params(params_file, overrides)
    generator = load_generator(model_uri, _model_store(model_uri, params.tracking, _root()))
    export_generator(generator, out_dir)
    console.print(
        f"wrote {out_dir}: a Hugging Face model folder; its README.md says how to load and "
        "prompt it",
        highlight=False,
        soft_wrap=True,
    )


@app.command("run")
def run(
    force: Annotated[bool, typer.Option(help="retrain even when nothing changed")] = False,
    only: OnlyOption = None,
    timings: Annotated[
        Path | None, typer.Option(help="write where the time went (JSON; bench/pipeline.py)")
    ] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """The whole pipeline, for text and images: data refresh → train → evaluate → register →
    promote, each modality on its own training key and registered model."""
    paths, params = _project(params_file, overrides)  # before Prefect starts
    _existing_folder("--timings", timings)
    if "text" in (only or ["text"]):
        _check_base_model(paths, params)
    run_record = runtime.start(paths.work)  # first ends what a killed run left running
    wait_for_api = _start_prefect_api(params, run_record)  # boots while the flows import
    from aigc.config import chosen_modalities
    from flows.retrain import retrain

    chosen_modalities(only)
    ready = _seconds_since_process_start()
    wait_for_api()
    summaries = retrain(
        root=str(paths.root),
        params_file=str(params_file) if params_file else None,
        overrides=overrides or [],
        force=force,
        only=only or None,
    )
    for summary in summaries.values():
        _print_summary(summary)
    if timings:
        last = list(summaries.values())[-1]  # the parts and seconds are the whole run's
        record = {"cli_ready": ready, "flow": last.seconds, "parts": last.timings}
        timings.write_text(json.dumps(record, indent=2) + "\n")
    _print_share_hint(paths.root)


def _check_base_model(paths: ProjectPaths, params: Params) -> None:
    """A fine-tune's base folder is there and readable before anything starts (one line, exit
    2, when it is not)."""
    from aigc.models.configs import HFConfig

    if isinstance(params.train.model, HFConfig):
        from aigc.models.hf import resolve_base

        resolve_base(params.train.model.path, paths.root)


def _start_prefect_api(params: Params, record: runtime.RunRecord) -> Callable[[], None]:
    """Start Prefect's temporary API server (when no PREFECT_API_URL is set) in a thread;
    the function returned waits until it answers, or raises a UserError saying why not.

    It is a process of its own that takes seconds to answer; started first, it boots while
    this process imports the pipeline instead of after (1.5 s of a 23 s no-change run, on 2
    cores). The flows' client then finds it running: Prefect keeps one temporary server per
    process. aigc waits `run.prefect_start_timeout_seconds` for it, not Prefect's own 20 s,
    which a loaded machine misses. A start that fails is stopped here and ends the command:
    Prefect's client would start a second server on the same port and lose the first.

    The server is noted in `record` the moment it is started, so that the next run ends it
    if this process is killed; Prefect's exit hook stops it when this process exits. The
    thread is not a daemon: an exit waits for the start to end, then stops the server."""
    timeout = params.run.prefect_start_timeout_seconds
    failures: list[BaseException] = []

    def start() -> None:
        from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

        if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
            return
        from prefect.server.api.server import SubprocessASGIServer

        class RecordedServer(SubprocessASGIServer):
            def _run_uvicorn_command(self):  # each process Prefect starts for its server
                process = super()._run_uvicorn_command()
                record.note_children()
                return process

        server = RecordedServer()  # Prefect's one per process, if it exists already
        try:
            server.start(timeout=timeout)
        except Exception as error:
            process = server.server_process
            code = process.poll() if process else None
            server.stop()
            if process is None:
                why = f"could not start: {error}"
            elif code is not None:
                why = f"exited with code {code} before it answered (its output is above)"
            else:
                why = f"did not answer within {timeout:g} s"
            failures.append(
                UserError(
                    f"Prefect's temporary API server {why}. Fix: on a busy machine give it "
                    f"longer (`--set run.prefect_start_timeout_seconds={max(300, 2 * timeout):g}`"
                    "), or set PREFECT_API_URL to a running Prefect server (`aigc stack up`)"
                )
            )
            return
        record.note_children()  # in case Prefect started it some other way

    def start_and_keep_error() -> None:
        try:
            start()
        except Exception as error:  # raised by wait(), in the thread that runs the command
            failures.append(error)

    # In this thread's context: settings a caller set for the duration (Prefect's test
    # harness sets PREFECT_API_URL so) hold in the start thread too.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(start_and_keep_error,), name="prefect-api-start"
    )
    thread.start()

    def wait() -> None:
        thread.join()
        if failures:
            raise failures[0]

    return wait


def _seconds_since_process_start() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()


# On aigc's own server: a tick starts within 2 s after its time (never before it, so that it
# does not meet the previous run still running), at one light request to loopback each 2 s.
OWN_SERVER_POLL_SECONDS = 2.0


@app.command("schedule")
def schedule(
    cron: Annotated[str, typer.Option(help='cron expression, e.g. "0 3 * * *"')],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron")] = "UTC",
    name: Annotated[str, typer.Option(help="deployment name")] = "aigc-retrain",
    only: OnlyOption = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Serve the retrain flow as a Prefect deployment on a cron schedule, one run at a time
    (blocks; Ctrl-C or SIGTERM stops it). Without PREFECT_API_URL, on a Prefect server of
    aigc's own, stopped with the command: Prefect's temporary API runs no scheduler."""
    from aigc.config import chosen_modalities
    from aigc.schedule import ScheduleServer

    paths, params = _project(params_file, overrides)
    _check_schedule(cron, timezone)
    chosen_modalities(only)
    record = runtime.start(paths.work)  # first ends what a killed command left running
    from prefect.settings import PREFECT_API_URL, temporary_settings

    server = None
    if not PREFECT_API_URL.value():
        server = ScheduleServer.start(paths.root, paths.work, record.scratch)
    before = signal.signal(signal.SIGTERM, _as_ctrl_c)  # from here on, the `finally` runs
    try:
        if server is not None:
            record.note_children()  # the moment it runs: the next command ends it if this dies
        from flows.retrain import scheduled_deployment  # imported while the server boots

        settings, poll_seconds = {}, None
        if server is not None:
            server.wait_ready(params.run.prefect_start_timeout_seconds)
            settings, poll_seconds = {PREFECT_API_URL: server.url}, OWN_SERVER_POLL_SECONDS
            console.print(
                f"aigc's Prefect server for the schedule: {server.url} (pid "
                f"{server.process.pid}; dashboard {server.url.removesuffix('/api')}; log "
                f"{escape(str(server.log))})",
                soft_wrap=True,
            )
        with temporary_settings(settings):
            deployment = scheduled_deployment(
                str(paths.root),
                cron,
                timezone,
                name,
                str(params_file) if params_file else None,
                overrides or [],
                only or None,
            )
            console.print(
                f"serving [bold]retrain/{name}[/] on cron {cron!r} ({timezone}); Ctrl-C stops"
            )
            _serve(deployment, poll_seconds)
    except KeyboardInterrupt:
        pass  # Ctrl-C or SIGTERM: stop the server, exit 0
    finally:
        signal.signal(signal.SIGTERM, before)
        if server is not None:
            console.print(f"aigc's Prefect server (pid {server.process.pid}) {server.stop()}")


def _as_ctrl_c(signum: int, frame: object) -> None:
    """SIGTERM handled as Ctrl-C is: asyncio's handler while an event loop runs (it cancels
    the loop's main task), else KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if not callable(handler):  # SIGINT ignored (a background job of a script)
        raise KeyboardInterrupt
    handler(signum, frame)


def _serve(deployment, poll_seconds: float | None) -> None:
    """Prefect's `serve(deployment)`, stopped by SIGTERM as by Ctrl-C; with `poll_seconds`, the
    runner asks for due runs that often and starts none before its time (Prefect's runner asks
    every 10 s for the runs due within the next 10 s, and starts them at once).

    Prefect's runner answers SIGTERM by calling its `stop` from the signal handler, inside its
    event loop, where that only creates a coroutine ("coroutine 'Runner.astop' was never
    awaited") and exits mid-loop. Here the runner's task is cancelled instead: the runner
    terminates its flow runs, pauses the schedule and returns."""
    import asyncio

    from prefect.runner import Runner

    class StoppableRunner(Runner):
        def handle_sigterm(self, signum: int, frame: object) -> None:
            _as_ctrl_c(signum, frame)

    timing = {} if poll_seconds is None else {"query_seconds": poll_seconds, "prefetch_seconds": 0}
    runner = StoppableRunner(pause_on_shutdown=True, **timing)
    runner.add_deployment(deployment)
    asyncio.run(runner.start())  # Ctrl-C: KeyboardInterrupt, once the runner has stopped


def _check_schedule(cron: str, timezone: str) -> None:
    """A UserError naming --cron or --timezone unless Prefect's schedule accepts them."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        CronSchedule(cron=cron)
    except ValueError:
        raise UserError(
            f"--cron {cron!r} is not a cron expression; give five fields, minute hour "
            'day-of-month month day-of-week, e.g. "0 3 * * *" for 03:00 every day'
        ) from None
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValueError:
        raise UserError(
            f"--timezone {timezone!r} is not an IANA time zone; give one such as UTC, "
            "Europe/Berlin or America/New_York"
        ) from None


@app.command("reproduce")
def reproduce(
    target: Annotated[str | None, typer.Argument(help="NAME/VERSION, e.g. aigc-text/3")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="a training run id")] = None,
    tolerance: Annotated[float, typer.Option(help="relative tolerance per metric")] = 1e-6,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Rebuild a model from its data version and prove the metrics match (exit 0 if so)."""
    from aigc.reproduce import carry_out, plan_reproduction

    paths, params = _project(params_file, overrides)
    reproduction = plan_reproduction(paths, params, target, run_id)
    # The recorded budget, not this clone's params: exactly the original run's steps.
    with _training_progress(reproduction.train, reproduction.announcement) as on_progress:
        report = carry_out(paths, params, reproduction, tolerance, on_progress=on_progress)
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    table = Table(
        "metric",
        "original",
        "reproduced",
        "difference",
        "ok",
        title=f"reproduction of run {report.original_run_id[:12]} "
        f"(data version {report.data_version[:12]})",
    )
    for row in report.metrics:
        table.add_row(
            row["metric"],
            f"{row['original']:.6g}",
            f"{row['reproduced']:.6g}",
            f"{row['difference']:.2e}",
            "yes" if row["ok"] else "[red]NO[/]",
        )
    console.print(table)
    weights = report.weights
    console.print(
        f"weights sha256: {'identical' if weights['equal'] else 'DIFFERENT'} "
        f"({weights['original']} vs {weights['reproduced']})"
    )
    console.print(f"reproduction run {report.reproduction_run_id} (tag reproduction_of)")
    if not report.matches:
        console.print("[bold red]the reproduction does not match[/]")
        raise typer.Exit(1)
    console.print("[bold green]the reproduction matches[/]")


@registry_app.command("show")
def registry_show(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Every version of each registered model (text's, images'), aliases, metrics, decision."""
    from aigc.config import MODALITIES
    from aigc.registry.registry import require_versions, versions

    params = _params(params_file, overrides)
    settings = _registry_store(params.tracking, _root())
    shown = 0
    for modality in MODALITIES:
        name = params.for_modality(modality).registry.model_name
        found = versions(settings, name)
        if not found:
            continue
        shown += 1
        headline = REGISTRY_COLUMNS[modality]
        table = Table(
            "version",
            "aliases",
            "data version",
            "model",
            *(title for title, _ in headline),
            "decision",
            "run",
            title=f"registered model {name}",
        )
        for item in reversed(found):
            table.add_row(
                item.version,
                ", ".join(item.aliases) or "-",
                item.tags.get("aigc.data_version", "")[:12],
                _model_column(item.tags),
                *(f"{item.metrics.get(key, float('nan')):.3f}" for _, key in headline),
                item.tags.get("aigc.decision", "(undecided)"),
                item.run_id[:12],
            )
        console.print(table)
        for item in reversed(found):
            line = _base_line(item.version, item.tags)
            if line is not None:
                console.print(line, soft_wrap=True, highlight=False)
    if not shown:
        require_versions(settings, params.registry.model_name)  # says what the store holds


def _model_column(tags: dict[str, str]) -> str:
    """The family; a fine-tune's base is named under the table (`_base_line`)."""
    return tags.get("aigc.family", "-")


def _base_line(version: str, tags: dict[str, str]) -> str | None:
    """Where a fine-tuned version started: architecture, size, content hash, folder."""
    base = tags.get("aigc.base_model.sha256")
    if base is None:
        return None
    return (
        f"version {version} was fine-tuned from {tags.get('aigc.base_model.architecture', '?')}"
        f" ({tags.get('aigc.base_model.parameters', '?')} parameters, sha256 {base}) at "
        f"{tags.get('aigc.base_model.path', '?')}"
    )


# The headline columns of `registry show`, per modality: (title, metric).
REGISTRY_COLUMNS = {
    "text": (
        ("test bits/char", "test_bits_per_character"),
        ("label control", "label_control_accuracy"),
    ),
    "image": (
        ("Fréchet distance", "frechet_distance"),
        ("cond. accuracy", "conditional_accuracy"),
    ),
}


@registry_app.command("history")
def registry_history(
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Every promotion decision, newest first, with its reasons."""
    from aigc.registry.registry import history

    params = _params(params_file, overrides).for_modality(modality)
    settings = _registry_store(params.tracking, _root())
    name = params.registry.model_name
    entries = history(settings, name)
    if not entries:
        console.print(f"no decision recorded yet for registered model {name}")
    for entry in entries:
        console.print(
            f"[bold]{entry['when']}[/] {entry['kind']}: version {entry['version']} "
            f"{entry['decision']} (champion before: {entry['champion_before'] or 'none'})"
        )
        for reason in entry["reasons"]:
            console.print(f"    - {reason}", highlight=False, markup=False)


@registry_app.command("promote")
def registry_promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reason: Annotated[str, typer.Option(help="why the gate is skipped (recorded)")],
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Make a version the champion by hand, skipping the gate (recorded as manual)."""
    from aigc.registry.registry import promote_manually

    params = _params(params_file, overrides).for_modality(modality)
    settings = _registry_store(params.tracking, _root())
    promoted = promote_manually(settings, params.registry.model_name, version, reason)
    console.print(f"version {promoted.version} is now the champion (manual promotion)")


@registry_app.command("rollback")
def registry_rollback(
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """The champion returns to the version it replaced."""
    from aigc.registry.registry import rollback as roll_back

    params = _params(params_file, overrides).for_modality(modality)
    settings = _registry_store(params.tracking, _root())
    restored = roll_back(settings, params.registry.model_name, reason)
    console.print(f"version {restored.version} is the champion again")


@app.command("promote")
def promote(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """The gate on the current challenger: both evaluated on the current data, then decided."""
    from aigc.registry.registry import CHALLENGER, by_alias
    from aigc.stages.evaluate import evaluate as evaluate_stage
    from aigc.stages.promote import current_champion, rival
    from aigc.stages.promote import promote as promote_stage
    from aigc.stages.version import current_dataset
    from aigc.tracking import TrackingSettings

    paths, params = _project(params_file, overrides)
    name = params.registry.model_name
    challenger = by_alias(TrackingSettings.of(params.tracking, paths.root), name, CHALLENGER)
    if challenger is None:
        raise UserError(f"registered model {name!r} has no challenger: run `aigc run` first")
    dataset = current_dataset(paths)
    evaluation = evaluate_stage(paths, params, challenger.uri, dataset)
    champion = rival(current_champion(paths, params), challenger)
    champion_evaluation = (
        evaluate_stage(paths, params, champion.uri, dataset) if champion else None
    )
    decision = promote_stage(paths, params, challenger, evaluation, champion, champion_evaluation)
    verdict = "promoted" if decision.promote else "kept the champion"
    console.print(f"challenger version {challenger.version}: [bold]{verdict}[/]")
    for reason in decision.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)


@app.command("params")
def params_command(
    write: Annotated[
        bool, typer.Option(help="also write params.effective.yaml (what DVC's stages read)")
    ] = False,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Print the effective configuration: params.yaml, the overrides and every default.

    Printing works anywhere (outside a project: the defaults, a start for a params.yaml);
    --write needs a project."""
    from aigc.config import effective_yaml, write_effective_params

    if write:
        paths, params = _project(params_file, overrides)
    else:
        params = _params(params_file, overrides)
    sys.stdout.write(effective_yaml(params))  # plain: rich would wrap the YAML
    if write:
        write_effective_params(params, paths.effective_params)


@stack_app.command("up")
def stack_up() -> None:
    """Start the stack (what is not running yet), wait until healthy, write its profile."""
    from aigc.stack.stack import up

    started = time.perf_counter()
    statuses = up(_root(), say=lambda text: console.print(text, highlight=False))
    _print_stack(statuses)
    console.print(
        f"stack up in {time.perf_counter() - started:.1f} s; use it with "
        "[bold]aigc --profile stack COMMAND[/] (profile: .aigc/stack/profile.env)"
    )


@stack_app.command("status")
def stack_status() -> None:
    """Each service's URL and health (exit 1 unless all are healthy)."""
    from aigc.stack.stack import status

    statuses = status(_root())
    if statuses is None:
        console.print("the stack is not up here (nothing in .aigc/stack/): `aigc stack up`")
        raise typer.Exit(1)
    _print_stack(statuses)
    if not all(item.healthy for item in statuses):
        raise typer.Exit(1)


@stack_app.command("down")
def stack_down() -> None:
    """Stop exactly the processes `aigc stack up` started; the data stays."""
    from aigc.stack.stack import down

    outcomes = down(_root(), say=lambda text: console.print(text, highlight=False))
    if outcomes is None:
        console.print("the stack is not up here: nothing to stop")
    else:
        console.print("stack down (data kept in .aigc/stack/)")


def _print_stack(statuses) -> None:
    for item in statuses:
        if item.health is None:
            health = "[red]not running[/]"
        else:
            health = "[green]healthy[/]" if item.health.ok else "[red]unhealthy[/]"
            health += f" ({escape(item.health.detail)})"
        memory = f", {item.pss / 2**20:.0f} MiB" if item.pid else ""
        console.print(
            f"[bold]{item.name:<8}[/] {item.url}  pid {item.pid or '-'}{memory}  {health}",
            highlight=False,
            soft_wrap=True,
        )
    rss, pss = (sum(getattr(item, key) for item in statuses) for key in ("rss", "pss"))
    console.print(
        f"memory of the stack: {pss / 2**30:.2f} GiB (PSS; RSS summed {rss / 2**30:.2f})"
    )


def _print_summary(summary) -> None:
    from aigc.evaluate import HEADLINE_METRICS
    from aigc.evaluate.image_report import IMAGE_HEADLINE_METRICS

    colour = {"promoted": "green", "rejected": "yellow", "no change": "cyan"}[summary.status]
    console.print(
        f"\n[bold]{summary.modality}[/]: [bold {colour}]{summary.status}[/] in "
        f"{summary.seconds:.0f}s · data version "
        f"{summary.data_version[:12]} · run {summary.run_id[:12]} · challenger version "
        f"{summary.challenger_version} · champion version {summary.champion_version or '-'}"
    )
    table = Table("metric", "challenger", "champion (same test split)")
    for key in (*HEADLINE_METRICS, *IMAGE_HEADLINE_METRICS):
        if key in summary.challenger_metrics:
            champion = (summary.champion_metrics or {}).get(key)
            table.add_row(
                key,
                f"{summary.challenger_metrics[key]:.4g}",
                "-" if champion is None else f"{champion:.4g}",
            )
    console.print(table)
    for reason in summary.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)
    for label, text in sorted(summary.samples.items()):
        console.print(f"{label}: {text.strip()[:160]}", highlight=False, markup=False)


def _training_progress(train: TrainParams | ImageTrainParams, announcement: str | None = None):
    """A rich progress bar fed by rank 0 of the Ray workers, training with `train`.

    Its total is the step that the first budget to run out stops at: max_steps or max_tokens
    exactly, max_minutes estimated from the rate so far ("~"); the column after it says which.
    `announcement` replaces the first line, "training until <the budgets>"."""
    import contextlib

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from aigc.train.progress import (
        BudgetEstimate,
        describe_budgets,
        throughput,
        tokens_per_step,
    )

    loop, step_tokens = train.loop, tokens_per_step(train)
    announcement = announcement or f"training until {describe_budgets(loop, step_tokens)}"

    @contextlib.contextmanager
    def progress():
        columns = (
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[limit]}"),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
        )
        bar = Progress(*columns, console=console, transient=False)
        estimate = BudgetEstimate(loop, step_tokens)
        shown: list = []  # the bar's task, once training has started
        budget = estimate.update({"step": 0})

        def update(metrics: dict) -> None:
            nonlocal budget
            if not shown:  # shown from the first step: a command that fails before shows none
                console.print(announcement)
                bar.start()
                shown.append(
                    bar.add_task("train", total=budget.steps, limit="", loss=0.0, lr=0.0, rate="")
                )
            budget = estimate.update(metrics)
            bar.update(
                shown[0],
                total=budget.steps,
                limit=("~" if budget.estimated else "") + budget.limit,
                completed=metrics["step"],
                loss=metrics["train_loss"],
                lr=metrics["lr"],
                rate=throughput(metrics).strip(),
            )

        try:
            yield update
            if shown and budget.estimated:  # time ran out at the last step shown: the total
                bar.update(shown[0], total=bar.tasks[0].completed)
        finally:
            if shown:
                bar.stop()

    return progress()


def _print_metrics(metrics: dict[str, float]) -> None:
    table = Table("metric", "value", title="evaluation")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4g}")
    console.print(table)


def _print_trained(trained) -> None:
    console.print(
        f"\n[bold green]trained[/] run {trained.run_id} on data version "
        f"{trained.data_version[:12]}: {trained.steps} steps in {trained.seconds:.0f}s\n"
        f"model: {trained.model_uri}"
    )
    keys = ("train_loss", "val_loss", "restarts")
    _print_metrics({key: trained.metrics[key] for key in keys if key in trained.metrics})


def _print_evaluation(evaluation) -> None:
    from aigc.evaluate import HEADLINE_METRICS

    metrics = evaluation.metrics
    _print_metrics({key: metrics[key] for key in HEADLINE_METRICS if key in metrics})
    console.print(f"recorded in MLflow run {evaluation.run_id}")
    for label, texts in sorted(evaluation.samples.items()):
        if texts:
            console.print(f"{label}: {texts[0].strip()[:200]}", highlight=False, markup=False)


def _print_counts(counts: dict) -> None:
    table = Table("split", "records")
    for split, count in counts["splits"].items():
        table.add_row(split, str(count))
    labels = Table("label", "records", "share")
    total = max(1, sum(counts["labels"].values()))
    for label, count in sorted(counts["labels"].items(), key=lambda item: -item[1]):
        labels.add_row(label, str(count), f"{count / total:.1%}")
    console.print(table, labels)


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


if __name__ == "__main__":
    main()
