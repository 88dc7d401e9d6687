"""`aigc data ...`: one data stage (collect, clean, label, version), the data flow
(refresh), and the data versions (status, checkout, commit)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from aigc import runtime
from aigc.errors import UserError
from aigc.modality import data_of
from aigc.paths import ProjectPaths
from cli.app import (
    ModalityOption,
    OnlyOption,
    ParamsOption,
    SetOption,
    _modality_project,
    _project,
    _root,
    data_app,
)
from cli.output import _print_counts, _print_share_hint, console
from cli.prefect_api import _start_prefect_api


@data_app.command("collect")
def data_collect(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = "text",
) -> None:
    """Read every configured source into a new immutable raw snapshot."""
    chosen, paths, params = _modality_project(modality, params_file, overrides)
    from aigc.stages.collect import collect

    collected = collect(paths, params, chosen)
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
        console.print(f"{data_of(chosen).raw} tracked by DVC: {collected.raw_hash}")


@data_app.command("clean")
def data_clean(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = "text",
) -> None:
    """Clean the newest raw snapshot; every removed record goes to the quarantine."""
    from aigc.stages.clean import clean

    chosen, paths, params = _modality_project(modality, params_file, overrides)
    cleaned = clean(paths, params, chosen)
    console.print(
        f"clean: {cleaned.records} records kept, {cleaned.quarantined} quarantined"
        + "".join(f"\n  {rule}: {count}" for rule, count in cleaned.quarantined_by_rule.items())
    )


@data_app.command("label")
def data_label(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = "text",
) -> None:
    """Label the clean records (text: by topic; images: their class) and split them."""
    from aigc.stages.label import label

    chosen, paths, params = _modality_project(modality, params_file, overrides)
    labeled = label(paths, params, chosen)
    _print_counts(labeled.counts)


@data_app.command("version")
def data_version(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = "text",
) -> None:
    """Push the labeled dataset to the DVC remote and record it as a data version."""
    from aigc.data.snapshots import latest_snapshot
    from aigc.stages.label import labeled_dataset
    from aigc.stages.version import version

    chosen, paths, params = _modality_project(modality, params_file, overrides)
    where = paths.data(data_of(chosen))
    snapshot = latest_snapshot(where.raw)
    if snapshot is None or not (where.reports / "label.json").exists():
        raise UserError("nothing to version yet: run `aigc data refresh` first")
    counts = labeled_dataset(where).counts
    outcome = version(paths, params, chosen, snapshot.name, counts)
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
    from aigc.modality import chosen_modalities

    paths, params = _project(params_file, overrides)
    chosen = chosen_modalities(only)
    started = time.perf_counter()
    wait_for_api = _start_prefect_api(params, runtime.start(paths.work))
    from flows.data_refresh import data_refresh as flow

    wait_for_api()
    versions = flow(root=str(paths.root), params=params, modalities=chosen)
    seconds = time.perf_counter() - started
    for name, dataset in versions.items():
        console.print(f"\n[bold green]{name} data version {dataset.version[:12]}[/]")
        _print_counts(dataset.counts)
    console.print(f"data refresh took {seconds:.0f}s")
    _print_share_hint(paths.root)


@data_app.command("status")
def data_status(
    params_file: ParamsOption = None,
    overrides: SetOption = None,
    modality: ModalityOption = "text",
) -> None:
    """Show the current data version, counts per split and label, and earlier versions."""
    from aigc.data.version import VersionNotFound, current_version, history, status
    from aigc.modality import get_modality

    paths, _ = _project(params_file, overrides, writes=False)  # checks the params too
    root = paths.root
    kind = data_of(get_modality(modality))
    versions = history(root, kind)
    try:
        current = current_version(root, kind)
    except VersionNotFound as error:
        console.print(f"no data version yet ({error})")
        raise typer.Exit(1) from None
    entry = next((known for known in versions if known.version == current), None)
    console.print(f"current {modality} data version: [bold]{current}[/]")
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
    modality: ModalityOption = "text",
) -> None:
    """Restore exactly that data version from the DVC cache, or the remote."""
    from aigc.data.version import checkout_version, configure_remote
    from aigc.modality import get_modality

    paths, params = _project(params_file, overrides)
    kind = data_of(get_modality(modality))
    remote = params.version.remote_name
    configure_remote(paths.root, remote, params.version.remote_url)
    dest = checkout_version(paths.root, version, out or paths.data(kind).labeled, kind, remote)
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
