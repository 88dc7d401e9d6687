"""Prefect flow `data-refresh`: collect → clean → label → version, for each modality.

Runs on Prefect's ephemeral local API with no server, or against a running `prefect server`
(set PREFECT_API_URL) where it shows up in the UI. clean and label run the modality's DVC
stages (`clean`, `label`; `image_clean`, `image_label`), so a run leaves `dvc status` clean and
skips what DVC knows is unchanged. The run's configuration (params.yaml + overrides) is written
to params.effective.yaml, which DVC's stages read. Each modality gets its own data version;
its task runs are named after it (`text-collect`, `image-version`).
"""

from __future__ import annotations

from prefect import flow

from aigc import timing
from aigc.config import Params, load_params, write_effective_params
from aigc.modality import modality_names
from aigc.paths import ProjectPaths
from aigc.stages.version import DataVersions
from tasks.clean import clean
from tasks.collect import collect
from tasks.label import label
from tasks.version import version


@flow(name="data-refresh", log_prints=True)
def data_refresh(
    root: str = ".",
    params_file: str | None = None,
    overrides: list[str] | None = None,
    params: Params | None = None,
    modalities: tuple[str, ...] | None = None,
) -> DataVersions:
    paths = ProjectPaths.at(root)
    params = params or load_params(params_file or paths.params, overrides or [])
    write_effective_params(params, paths.effective_params)
    refreshed = {}
    for name in modalities or modality_names():
        with timing.scope(f"{name} "):  # its parts named apart: "image clean"
            collected = collect(paths.root, params, name)
            cleaned = clean(paths.root, name, wait_for=[collected])
            labeled = label(paths.root, name, wait_for=[cleaned])
            refreshed[name] = version(paths.root, params, collected, labeled, name)
    return DataVersions(refreshed)
