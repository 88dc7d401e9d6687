"""Prefect flow `data-refresh`: collect → clean → label → version.

Runs on Prefect's ephemeral local API with no server, or against a running `prefect server`
(set PREFECT_API_URL) where it shows up in the UI. clean and label run through DVC, so a
run leaves `dvc status` clean and skips what DVC knows is unchanged.
"""

from __future__ import annotations

from prefect import flow, get_run_logger

from aigc.config import materialize_params
from aigc.data.stages import LabeledDataset
from aigc.paths import ProjectPaths
from tasks.clean import clean
from tasks.collect import collect
from tasks.label import label
from tasks.version import version


@flow(name="data-refresh", log_prints=True)
def data_refresh(
    root: str = ".", params_file: str | None = None, overrides: list[str] | None = None
) -> LabeledDataset:
    paths = ProjectPaths.at(root)
    params, changed = materialize_params(paths.params, params_file, overrides or [])
    if changed:
        get_run_logger().info("params.yaml updated with the given configuration")
    collected = collect(paths.root, params)
    cleaned = clean(paths.root, wait_for=[collected])
    labeled = label(paths.root, wait_for=[cleaned])
    return version(paths.root, params, collected, labeled)
