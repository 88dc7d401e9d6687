"""`aigc registry ...`: the registered models' versions, decisions and manual overrides;
and `aigc promote`, the gate deciding on the registry's challenger."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from aigc import runtime
from cli.app import (
    ModalityOption,
    ParamsOption,
    SetOption,
    _params,
    _project,
    _registry_store,
    _root,
    app,
    registry_app,
)
from cli.output import console
from cli.prefect_api import _start_prefect_api


@registry_app.command("show")
def registry_show(params_file: ParamsOption = None, overrides: SetOption = None) -> None:
    """Every version of each registered model (text's, images'), aliases, metrics, decision."""
    from aigc.modality import get_modality, modality_names
    from aigc.registry.registry import require_versions, versions

    params = _params(params_file, overrides)
    settings = _registry_store(params.tracking, _root())
    shown = 0
    for chosen in map(get_modality, modality_names()):
        name = chosen.view(params).registry.model_name
        found = versions(settings, name)
        if not found:
            continue
        shown += 1
        headline = chosen.registry_columns
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


def _modality_registry(modality: str, params_file, overrides):
    """(the params as the registry verbs read them for `modality`: its model and policy, the
    registry store's settings)."""
    from aigc.modality import get_modality

    params = get_modality(modality).view(_params(params_file, overrides))
    return params, _registry_store(params.tracking, _root())


@registry_app.command("history")
def registry_history(
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """Every promotion decision, newest first, with its reasons."""
    from aigc.registry.registry import history

    params, settings = _modality_registry(modality, params_file, overrides)
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

    params, settings = _modality_registry(modality, params_file, overrides)
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

    params, settings = _modality_registry(modality, params_file, overrides)
    restored = roll_back(settings, params.registry.model_name, reason)
    console.print(f"version {restored.version} is the champion again")


@app.command("promote")
def promote(
    modality: ModalityOption = "text",
    params_file: ParamsOption = None,
    overrides: SetOption = None,
) -> None:
    """The gate on the current challenger: both evaluated on the current data, then decided
    (the retrain flow's own steps, run as the Prefect flow `promote`)."""
    from aigc.modality import get_modality

    get_modality(modality)  # an unknown one is one line before Prefect starts
    paths, params = _project(params_file, overrides)
    wait_for_api = _start_prefect_api(params, runtime.start(paths.work))
    from flows.retrain import promote_challenger

    wait_for_api()
    decision = promote_challenger(
        root=str(paths.root),
        params_file=str(params_file) if params_file else None,
        overrides=overrides or [],
        modality=modality,
    )
    verdict = "promoted" if decision.promote else "kept the champion"
    version = decision.challenger.get("version")
    console.print(f"challenger version {version}: [bold]{verdict}[/]")
    for reason in decision.reasons:
        console.print(f"  - {reason}", highlight=False, markup=False)
