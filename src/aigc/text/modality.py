"""The text modality: labeled documents in, a conditional language model out."""

from __future__ import annotations

from pathlib import Path

from aigc.config import Params
from aigc.modality import Modality, lazy, lazy_value
from aigc.paths import DataLayout


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
    data=DataLayout("text", "data", clean_stage="clean", label_stage="label"),
    data_section=lambda params: params,  # collect, clean, label, split, version
    collect_records=lazy("aigc.text.collect:collect_sources"),
    clean_records=lazy("aigc.text.clean:clean_records"),
    clean_figures=lazy("aigc.text.clean_report:write_clean_figures"),
    label_records=lazy("aigc.text.label:label_documents"),
    label_metrics=lazy("aigc.text.label:label_metrics"),
    train_section=lambda params: params.train,
    with_train_section=lambda params, train: params.model_copy(update={"train": train}),
    view=lambda params: params,
    with_experiment=lambda params, name: params.model_copy(
        update={"tracking": params.tracking.model_copy(update={"experiment": name})}
    ),
    training_inputs=training_inputs,
    check_inputs=check_inputs,
    params_sections=("train", "evaluate"),
    prepare_training=lazy("aigc.text.training:prepare_training"),
    assess=lazy("aigc.text.evaluate.assess:assess"),
    evaluate_section=("evaluate",),
    headline=("test_bits_per_character", "unigram_bits_per_character"),
    registered_metrics=lazy_value("aigc.text.evaluate:HEADLINE_METRICS"),
    registry_columns=(
        ("test bits/char", "test_bits_per_character"),
        ("label control", "label_control_accuracy"),
    ),
)
