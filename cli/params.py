"""`aigc params`: the effective configuration (params.yaml, the --set overrides, every
default)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.app import ParamsOption, SetOption, _params, _project, app


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
