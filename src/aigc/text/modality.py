"""The text modality: labeled documents in, a conditional language model out."""

from __future__ import annotations

from pathlib import Path

from aigc.config import Params
from aigc.data.version import TEXT as TEXT_DATA
from aigc.modality import Modality, lazy, lazy_value
from aigc.stages.version import Dataset, current_dataset


def base_model_sha256(params: Params, root: Path) -> str | None:
    """The content hash of the text model's pretrained base, if it has one."""
    from aigc.models.configs import HFConfig

    model = params.train.model
    if not isinstance(model, HFConfig):
        return None
    from aigc.models.hf import base_sha256, resolve_base

    return base_sha256(resolve_base(model.path, root))


def check_inputs(params: Params, root: Path) -> None:
    """A fine-tune's base folder is there and readable (one line, exit 2, when it is not)."""
    from aigc.models.configs import HFConfig

    if isinstance(params.train.model, HFConfig):
        from aigc.models.hf import resolve_base

        resolve_base(params.train.model.path, root)


def training_inputs(params: Params, root: Path) -> tuple[str, ...]:
    """The `train` section, and a fine-tune's base (the hash of its files)."""
    training = params.section_hash("train")
    base = base_model_sha256(params, root)
    return (training if base is None else f"{training}|{base}",)


TEXT = Modality(
    name="text",
    collect=lazy("aigc.stages.collect:collect"),
    clean=lazy("aigc.stages.clean:clean"),
    label=lazy("aigc.stages.label:label"),
    clean_in_dvc=lazy("aigc.stages.clean:run_in_dvc"),
    label_in_dvc=lazy("aigc.stages.label:run_in_dvc"),
    version=lazy("aigc.stages.version:version"),
    data_paths=lambda paths: paths,
    train_section=lambda params: params.train,
    with_train_section=lambda params, train: params.model_copy(update={"train": train}),
    view=lambda params: params,
    with_experiment=lambda params, name: params.model_copy(
        update={"tracking": params.tracking.model_copy(update={"experiment": name})}
    ),
    training_inputs=training_inputs,
    check_inputs=check_inputs,
    params_sections=("train", "evaluate"),
    current_dataset=current_dataset,
    dataset_at=lambda path, version: Dataset(Path(path), version),
    train=lazy("aigc.stages.train:train"),
    evaluate=lazy("aigc.stages.evaluate:evaluate"),
    headline=("test_bits_per_character", "unigram_bits_per_character"),
    registered_metrics=lazy_value("aigc.evaluate:HEADLINE_METRICS"),
    registry_columns=(
        ("test bits/char", "test_bits_per_character"),
        ("label control", "label_control_accuracy"),
    ),
    data_kind=TEXT_DATA,
)
