"""The `aigc` command line: the outermost layer (cli → flows → tasks → src/aigc).

    aigc data collect    read the sources into a new raw snapshot (and `dvc add` it)
    aigc data clean      the clean stage (what `dvc repro clean` runs)
    aigc data label      the label stage (what `dvc repro label` runs)
    aigc data refresh    the whole data flow in Prefect: collect → clean → label → version
    aigc data status     the current data version, its counts, and the earlier versions
    aigc data checkout   restore a data version from the DVC cache or remote
    aigc train           train on the current data version (Ray), evaluate, track in MLflow
    aigc evaluate        evaluate a logged model on the test split
    aigc generate        sample text from a logged model
    aigc run             the whole pipeline (change-aware), with a promotion decision
    aigc schedule        serve `aigc run` as a Prefect deployment on a cron schedule
    aigc registry show|history, aigc promote VERSION --reason, aigc rollback
    aigc reproduce NAME/VERSION   rebuild a model from its data version, compare the metrics

Every command takes `--params FILE` and repeatable `--set section.key=value`. Errors that
a user can fix are printed as one message naming the input and the fix, exit code 2.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from aigc.config import ConfigError, Params, load_params
from aigc.settings import apply_offline_defaults

console = Console()
app = typer.Typer(help="aigc: a training pipeline for generative models.", no_args_is_help=True)
data_app = typer.Typer(help="The data half: collect, clean, label, version.", no_args_is_help=True)
app.add_typer(data_app, name="data")
registry_app = typer.Typer(
    help="The model registry: versions, aliases, decisions.", no_args_is_help=True
)
app.add_typer(registry_app, name="registry")

ParamsOption = Annotated[
    Path | None, typer.Option("--params", help="params file (default: ./params.yaml)")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a parameter: section.key=value (repeatable)"),
]


def _params(params_file: Path | None, overrides: list[str] | None) -> Params:
    return load_params(params_file, overrides or [])


def _root() -> Path:
    return Path.cwd()


@data_app.command("collect")
def data_collect(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Read every configured source into a new immutable raw snapshot."""
    from aigc.data.stages import collect_stage
    from aigc.data.version import track_raw
    from aigc.paths import ProjectPaths

    params = _params(params_file, overrides)
    collected = collect_stage(ProjectPaths.at(_root()), params)
    table = Table("source", "type", "records", "flagged", "errors", "seconds")
    for source in collected.report["sources"]:
        flagged = ", ".join(f"{key} {value}" for key, value in source["flagged"].items())
        table.add_row(
            source["name"],
            source["type"],
            str(source["records"]),
            flagged or "-",
            "\n".join(source["errors"]) or "-",
            f"{source['seconds']:.1f}",
        )
    console.print(table)
    snapshot = collected.snapshot
    if snapshot.new:
        console.print(f"wrote [bold]{snapshot.path}[/] ({snapshot.records} records)")
    else:
        console.print(f"sources unchanged: newest snapshot {snapshot.path.name} still holds")
    if (_root() / ".dvc").is_dir():
        console.print(f"data/raw tracked by DVC: {track_raw(_root())}")


@data_app.command("clean")
def data_clean(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Clean the newest raw snapshot; every removed record goes to the quarantine."""
    from aigc.data.stages import clean_stage
    from aigc.paths import ProjectPaths

    cleaned = clean_stage(ProjectPaths.at(_root()), _params(params_file, overrides))
    console.print(
        f"clean: {cleaned.records} records kept, {cleaned.quarantined} quarantined"
        + "".join(f"\n  {rule}: {count}" for rule, count in cleaned.quarantined_by_rule.items())
    )


@data_app.command("label")
def data_label(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Label the clean records by topic and split them into train/validation/test."""
    from aigc.data.stages import label_stage
    from aigc.paths import ProjectPaths

    labeled = label_stage(ProjectPaths.at(_root()), _params(params_file, overrides))
    _print_counts(labeled.counts)


@data_app.command("refresh")
def data_refresh(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Run the data flow in Prefect: collect → clean → label → version."""
    from flows.data_refresh import data_refresh as flow

    started = time.perf_counter()
    labeled = flow(
        root=str(_root()),
        params_file=str(params_file) if params_file else None,
        overrides=overrides or [],
    )
    console.print(
        f"\n[bold green]data version {labeled.version[:12]}[/] "
        f"({time.perf_counter() - started:.0f}s)"
    )
    _print_counts(labeled.counts)


@data_app.command("status")
def data_status(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Show the current data version, counts per split and label, and earlier versions."""
    from aigc.data.version import VersionNotFound, current_version, history, status

    _params(params_file, overrides)  # validates the configuration the data was built with
    root = _root()
    versions = history(root)
    try:
        current = current_version(root)
    except VersionNotFound as error:
        console.print(f"no data version yet ({error})")
        raise typer.Exit(1) from None
    entry = next((known for known in versions if known.version == current), None)
    console.print(f"current data version: [bold]{current}[/]")
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
) -> None:
    """Restore exactly that data version from the DVC cache, or the remote."""
    from aigc.data.version import checkout_version, configure_remote
    from aigc.paths import ProjectPaths

    params = _params(params_file, overrides)
    paths = ProjectPaths.at(_root())
    configure_remote(paths.root, params.version.remote_name, params.version.remote_url)
    dest = checkout_version(paths.root, version, out or paths.labeled)
    console.print(f"restored data version {version} into {dest}")


@app.command("train")
def train(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Train a generator on the current data version (Ray), evaluate it, track it in MLflow."""
    from aigc.paths import ProjectPaths
    from aigc.train.stage import train_stage

    params = _params(params_file, overrides)
    with _training_progress(params) as on_progress:
        trained = train_stage(ProjectPaths.at(_root()), params, on_progress=on_progress)
    _print_trained(trained)


@app.command("evaluate")
def evaluate(
    model_uri: Annotated[str, typer.Option("--model-uri", help="runs:/…, models:/NAME@ALIAS")],
    out: Annotated[Path | None, typer.Option(help="write the report JSON here")] = None,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Evaluate a logged model on the test split of the current data version."""
    from aigc.paths import ProjectPaths
    from aigc.train.stage import evaluate_stage

    report, run_id = evaluate_stage(
        ProjectPaths.at(_root()), _params(params_file, overrides), model_uri
    )
    _print_metrics(report.metrics)
    console.print(f"recorded as MLflow run {run_id}")
    if out:
        out.write_text(report.to_json())
        console.print(f"report written to {out}")


@app.command("generate")
def generate(
    model_uri: Annotated[str, typer.Option("--model-uri", help="runs:/…, models:/NAME@ALIAS")],
    label: Annotated[str | None, typer.Option(help="topic to condition on")] = None,
    prompt: Annotated[str, typer.Option(help="text to continue")] = "",
    count: Annotated[int, typer.Option("-n", help="how many samples")] = 3,
    seed: Annotated[int, typer.Option(help="sampling seed")] = 0,
    max_new_tokens: Annotated[int, typer.Option(help="length of each sample")] = 96,
    temperature: Annotated[float, typer.Option(help="0: greedy")] = 0.8,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Generate text with a logged model."""
    from aigc.paths import ProjectPaths
    from aigc.tracking import load_generator
    from aigc.train.stage import tracking_settings

    params = _params(params_file, overrides)
    generator = load_generator(model_uri, tracking_settings(ProjectPaths.at(_root()), params))
    texts = generator.generate(
        [prompt] * count,
        [label] * count,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        seed=seed,
    )
    for index, text in enumerate(texts):
        console.rule(f"sample {index} · {label or 'unconditioned'} · seed {seed}")
        console.print(prompt + text, highlight=False, markup=False)


@app.command("run")
def run(
    force: Annotated[bool, typer.Option(help="retrain even when nothing changed")] = False,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """The whole pipeline: data refresh → train → evaluate → register → promote."""
    from flows.retrain import retrain

    _params(params_file, overrides)
    summary = retrain(
        root=str(_root()),
        params_file=str(params_file) if params_file else None,
        overrides=overrides or [],
        force=force,
    )
    _print_summary(summary)


@app.command("schedule")
def schedule(
    cron: Annotated[str, typer.Option(help='cron expression, e.g. "0 3 * * *"')],
    timezone: Annotated[str, typer.Option(help="IANA time zone of the cron")] = "UTC",
    name: Annotated[str, typer.Option(help="deployment name")] = "aigc-retrain",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Serve the retrain flow as a Prefect deployment on a cron schedule (blocks)."""
    from prefect import serve

    from flows.retrain import scheduled_deployment

    _params(params_file, overrides)
    deployment = scheduled_deployment(
        str(_root()),
        cron,
        timezone,
        name,
        str(params_file) if params_file else None,
        overrides or [],
    )
    console.print(f"serving [bold]retrain/{name}[/] on cron {cron!r} ({timezone}); Ctrl-C stops")
    serve(deployment)


@app.command("reproduce")
def reproduce(
    target: Annotated[str | None, typer.Argument(help="NAME/VERSION, e.g. aigc-text/3")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="a training run id")] = None,
    tolerance: Annotated[float, typer.Option(help="relative tolerance per metric")] = 1e-6,
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Rebuild a model from its data version and prove the metrics match (exit 0 if so)."""
    from aigc.paths import ProjectPaths
    from aigc.reproduce import reproduce as run_reproduction

    params = _params(params_file, overrides)
    with _training_progress(params) as on_progress:
        report = run_reproduction(
            ProjectPaths.at(_root()), params, target, run_id, tolerance, on_progress=on_progress
        )
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
    """Every version of the registered model, its aliases, metrics and decision."""
    from aigc.paths import ProjectPaths
    from aigc.registry.registry import versions
    from aigc.train.stage import tracking_settings

    params = _params(params_file, overrides)
    settings = tracking_settings(ProjectPaths.at(_root()), params)
    table = Table(
        "version",
        "aliases",
        "data version",
        "test bits/char",
        "label control",
        "decision",
        "run",
        title=f"registered model {params.registry.model_name}",
    )
    for item in reversed(versions(settings, params.registry.model_name)):
        metrics = item.metrics
        table.add_row(
            item.version,
            ", ".join(item.aliases) or "-",
            item.tags.get("aigc.data_version", "")[:12],
            f"{metrics.get('test_bits_per_character', float('nan')):.3f}",
            f"{metrics.get('label_control_accuracy', float('nan')):.3f}",
            item.tags.get("aigc.decision", "(undecided)"),
            item.run_id[:12],
        )
    console.print(table)


@registry_app.command("history")
def registry_history(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Every promotion decision, newest first, with its reasons."""
    from aigc.paths import ProjectPaths
    from aigc.registry.registry import history
    from aigc.train.stage import tracking_settings

    params = _params(params_file, overrides)
    settings = tracking_settings(ProjectPaths.at(_root()), params)
    for entry in history(settings, params.registry.model_name):
        console.print(
            f"[bold]{entry['when']}[/] {entry['kind']}: version {entry['version']} "
            f"{entry['decision']} (champion before: {entry['champion_before'] or 'none'})"
        )
        for reason in entry["reasons"]:
            console.print(f"    - {reason}", highlight=False, markup=False)


@app.command("promote")
def promote(
    version: Annotated[str, typer.Argument(help="model version to make champion")],
    reason: Annotated[str, typer.Option(help="why the gate is skipped (recorded)")],
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Make a version the champion by hand, skipping the gate (recorded as manual)."""
    from aigc.paths import ProjectPaths
    from aigc.registry.registry import promote_manually
    from aigc.train.stage import tracking_settings

    params = _params(params_file, overrides)
    settings = tracking_settings(ProjectPaths.at(_root()), params)
    promoted = promote_manually(settings, params.registry.model_name, version, reason)
    console.print(f"version {promoted.version} is now the champion (manual promotion)")


@app.command("rollback")
def rollback(
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """The champion returns to the version it replaced."""
    from aigc.paths import ProjectPaths
    from aigc.registry.registry import rollback as roll_back
    from aigc.train.stage import tracking_settings

    params = _params(params_file, overrides)
    settings = tracking_settings(ProjectPaths.at(_root()), params)
    restored = roll_back(settings, params.registry.model_name, reason)
    console.print(f"version {restored.version} is the champion again")


def _print_summary(summary) -> None:
    from aigc.evaluate import HEADLINE_METRICS

    colour = {"promoted": "green", "rejected": "yellow", "no change": "cyan"}[summary.status]
    console.print(
        f"\n[bold {colour}]{summary.status}[/] in {summary.seconds:.0f}s · data version "
        f"{summary.data_version[:12]} · run {summary.run_id[:12]} · challenger version "
        f"{summary.challenger_version} · champion version {summary.champion_version or '-'}"
    )
    table = Table("metric", "challenger", "champion (same test split)")
    for key in HEADLINE_METRICS:
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


def _training_progress(params: Params):
    """A rich progress bar fed by rank 0 of the Ray workers."""
    import contextlib

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    @contextlib.contextmanager
    def progress():
        columns = (
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.3f}"),
            TextColumn("lr {task.fields[lr]:.2e}"),
            TextColumn("{task.fields[tps]:,.0f} tok/s"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            task = bar.add_task(
                "train", total=params.train.loop.max_steps, loss=float("nan"), lr=0.0, tps=0.0
            )

            def update(metrics: dict) -> None:
                bar.update(
                    task,
                    completed=metrics["step"],
                    loss=metrics["train_loss"],
                    lr=metrics["lr"],
                    tps=metrics["tokens_per_second"],
                )

            yield update

    return progress()


def _print_metrics(metrics: dict[str, float]) -> None:
    table = Table("metric", "value", title="evaluation")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4g}")
    console.print(table)


def _print_trained(trained) -> None:
    from aigc.evaluate import HEADLINE_METRICS

    console.print(
        f"\n[bold green]trained[/] run {trained.run_id} on data version "
        f"{trained.data_version[:12]} in {trained.seconds:.0f}s\nmodel: {trained.model_uri}"
    )
    keys = (*HEADLINE_METRICS, "val_loss", "train_loss", "restarts")
    _print_metrics({key: trained.metrics[key] for key in keys if key in trained.metrics})
    for label, texts in sorted(trained.samples.items()):
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


def main() -> None:
    apply_offline_defaults()
    from aigc.data.clean import AccountingError
    from aigc.data.records import SchemaError
    from aigc.data.sources.base import SourceError
    from aigc.data.version import DvcError, VersionNotFound

    try:
        app()
    except (
        ConfigError,
        SourceError,
        SchemaError,
        AccountingError,
        DvcError,
        VersionNotFound,
        FileNotFoundError,
    ) as error:
        if os.environ.get("AIGC_TRACEBACK"):
            raise
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
