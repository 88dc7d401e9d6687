"""Prefect flow `data-refresh`: collect → clean → label → version, for text, then for images.

Runs on Prefect's ephemeral local API with no server, or against a running `prefect server`
(set PREFECT_API_URL) where it shows up in the UI. clean and label (image_clean and
image_label) run through DVC, so a run leaves `dvc status` clean and skips what DVC knows is
unchanged. The run's configuration (params.yaml + overrides) is written to
params.effective.yaml, which DVC's stages read. Each modality gets its own data version.
"""

from __future__ import annotations

from prefect import flow

from aigc.config import MODALITIES, Params, load_params, write_effective_params
from aigc.paths import ProjectPaths
from aigc.stages.image import DataVersions
from tasks.clean import clean
from tasks.collect import collect
from tasks.image import image_clean, image_collect, image_label, image_version
from tasks.label import label
from tasks.version import version


@flow(name="data-refresh", log_prints=True)
def data_refresh(
    root: str = ".",
    params_file: str | None = None,
    overrides: list[str] | None = None,
    params: Params | None = None,
    modalities: tuple[str, ...] = MODALITIES,
) -> DataVersions:
    paths = ProjectPaths.at(root)
    params = params or load_params(params_file or paths.params, overrides or [])
    write_effective_params(params, paths.effective_params)
    text = images = None

    if "text" in modalities:
        collected = collect(paths.root, params)
        cleaned = clean(paths.root, wait_for=[collected])
        labeled = label(paths.root, wait_for=[cleaned])
        text = version(paths.root, params, collected, labeled)

    if "image" in modalities:
        images_collected = image_collect(paths.root, params)
        images_cleaned = image_clean(paths.root, wait_for=[images_collected])
        images_labeled = image_label(paths.root, wait_for=[images_cleaned])
        images = image_version(paths.root, params, images_collected, images_labeled)
    return DataVersions(text=text, image=images)
