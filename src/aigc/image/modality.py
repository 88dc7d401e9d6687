"""The image modality: labeled images in, a class-conditional image generator out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aigc.config import Params, RegistryParams
from aigc.data.version import IMAGE as IMAGE_DATA
from aigc.modality import Modality, lazy, lazy_value
from aigc.stages.image import ImageDataset, ImagePaths, current_image_dataset


def view(params: Params) -> Params:
    """The params as the shared stages (plan, register, promote) read them for images: the
    image registry's model name, policy and experiment."""
    registry = params.image.registry
    return params.model_copy(
        update={
            "registry": RegistryParams(model_name=registry.model_name, policy=registry.policy),
            "tracking": params.tracking.model_copy(update={"experiment": registry.experiment}),
        }
    )


def _with_image(params: Params, **sections: object) -> Params:
    return params.model_copy(update={"image": params.image.model_copy(update=sections)})


def training_inputs(params: Params, root: Path) -> tuple[str, ...]:
    """`image.train` and the worker group of `train.ray`, which shapes data-parallel training."""
    ray = params.train.ray
    chosen = {
        "image.train": params.image.train.model_dump(mode="json"),
        "workers": [ray.num_workers, ray.cpus_per_worker, str(ray.use_gpu)],
    }
    return (hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:16],)


IMAGE = Modality(
    name="image",
    collect=lazy("aigc.stages.image:collect"),
    clean=lazy("aigc.stages.image:clean"),
    label=lazy("aigc.stages.image:label"),
    clean_in_dvc=lazy("aigc.stages.image:run_clean"),
    label_in_dvc=lazy("aigc.stages.image:run_label"),
    version=lazy("aigc.stages.image:version"),
    data_paths=ImagePaths.of,
    train_section=lambda params: params.image.train,
    with_train_section=lambda params, train: _with_image(params, train=train),
    view=view,
    with_experiment=lambda params, name: _with_image(
        params, registry=params.image.registry.model_copy(update={"experiment": name})
    ),
    training_inputs=training_inputs,
    check_inputs=None,
    params_sections=("image",),
    current_dataset=current_image_dataset,
    dataset_at=lambda path, version: ImageDataset(Path(path), version),
    train=lazy("aigc.stages.train:train_images"),
    evaluate=lazy("aigc.stages.evaluate:evaluate_images"),
    headline=("frechet_distance", "trivial_frechet_distance"),
    registered_metrics=lazy_value("aigc.evaluate.image_report:IMAGE_HEADLINE_METRICS"),
    registry_columns=(
        ("Fréchet distance", "frechet_distance"),
        ("cond. accuracy", "conditional_accuracy"),
    ),
    data_kind=IMAGE_DATA,
)
