"""The image modality: labeled images in, a class-conditional image generator out."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from aigc.config import Params, RegistryParams
from aigc.modality import Modality, lazy, lazy_value
from aigc.paths import DataLayout


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
    data=DataLayout("image", "data/image", clean_stage="image_clean", label_stage="image_label"),
    data_section=lambda params: params.image,  # its collect, clean, label, version
    collect_records=lazy("aigc.image.collect:collect_images"),
    clean_records=lazy("aigc.image.clean:clean_images"),
    clean_figures=None,
    label_records=lazy("aigc.image.label:label_dataset"),
    label_metrics=lazy("aigc.image.label:label_metrics"),
    train_section=lambda params: params.image.train,
    with_train_section=lambda params, train: _with_image(params, train=train),
    view=view,
    with_experiment=lambda params, name: _with_image(
        params, registry=params.image.registry.model_copy(update={"experiment": name})
    ),
    training_inputs=training_inputs,
    check_inputs=None,
    params_sections=("image",),
    prepare_training=lazy("aigc.image.training:prepare_training"),
    assess=lazy("aigc.image.evaluate.assess:assess"),
    evaluate_section=("image", "evaluate"),
    headline=("frechet_distance", "trivial_frechet_distance"),
    registered_metrics=lazy_value("aigc.image.evaluate.report:IMAGE_HEADLINE_METRICS"),
    registry_columns=(
        ("Fréchet distance", "frechet_distance"),
        ("cond. accuracy", "conditional_accuracy"),
    ),
)
