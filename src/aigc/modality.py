"""A modality: one kind of data and model (text, images) as the shared stages see it.

    modality = get_modality("image")
    collected = collect(paths, params, modality)               # aigc.stages: every stage
    key = training_key(data_version, params, modality, root)   # aigc.retrain
    trained = train(paths, params, dataset)                    # a Dataset names its modality
    view = modality.view(params)           # its registered model, policy and experiment

Text and images are two instances (`aigc.text.modality.TEXT`, `aigc.image.modality.IMAGE`),
each of a package laid out alike (aigc.text and aigc.image: sources, collect, clean, label,
dataset, training, generator, evaluate); the stages (aigc.stages), their Prefect tasks, the
flows and the CLI's verbs take one and ask it, instead of comparing names. A third is a
module that defines a `Modality` and one registration: a line in `_BUILTIN` below, or
`register_modality(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc.errors import UserError
from aigc.paths import DataLayout
from aigc.references import Catalog, resolve

# name -> "module:attribute" holding the modality; imported on first use.
_BUILTIN: dict[str, str] = {
    "text": "aigc.text.modality:TEXT",
    "image": "aigc.image.modality:IMAGE",
}
_MODALITIES: Catalog[Modality] = Catalog("modality", _BUILTIN, lambda modality: modality.name)


@dataclass(frozen=True)
class Modality:
    """What the shared stages need to know of one modality; every field a value, no branch."""

    name: str  # "text", "image": the prefix of its task runs and its summary artifact
    # Its data: where it lives and which DVC stages build it (None: it has no data stages,
    # its datasets are made elsewhere), its data params (`.collect.sources`, `.clean`,
    # `.label.overrides_file`, `.version.push`), and the cores the shared data stages
    # (aigc.stages.collect/clean/label/version) call:
    #   collect_records(sources, root, now, previous) -> Collection (aigc.data.collect)
    #   clean_records(raw frame, its clean params) -> .records, .quarantine, .report
    #   clean_figures(that result, reports folder) -> None, or None for no figures
    #   label_records(clean frame, its data params, overrides) -> .frame (with `split`), .report
    #   label_metrics(report, counts) -> the headline numbers DVC lists
    data: DataLayout | None
    data_section: Callable[[Any], Any]
    collect_records: Callable[..., Any]
    clean_records: Callable[..., Any]
    clean_figures: Callable[..., None] | None
    label_records: Callable[..., Any]
    label_metrics: Callable[[dict, dict], dict]
    # Its sections of the params: `train` (its model, loop, batch size), and the params as the
    # shared stages read them (`view`: its registered model, policy and experiment).
    train_section: Callable[[Any], Any]
    with_train_section: Callable[[Any, Any], Any]  # (params, section) -> params holding it
    view: Callable[[Any], Any]
    with_experiment: Callable[[Any, str], Any]  # (params, name) -> its runs go to experiment
    # What besides the data and the code makes its models: parts of the training key; and
    # a check of those inputs before anything runs (a fine-tune's base is there), or None.
    training_inputs: Callable[[Any, Path], tuple[str, ...]]
    check_inputs: Callable[[Any, Path], None] | None
    params_sections: tuple[str, ...]  # the sections a registered version's params hash covers
    # What the shared train and evaluate stages (aigc.stages.train, .evaluate) call:
    #   prepare_training(dataset, params, root) -> aigc.train.job.TrainingInputs (its job)
    #   assess(paths, params, model_uri, dataset, bundle_dir, scratch, on_progress)
    #       -> aigc.stages.evaluate.Assessment (its figures, per-document scores, files)
    prepare_training: Callable[..., Any]
    assess: Callable[..., Any]
    evaluate_section: tuple[str, ...]  # where its evaluate params are: ("image", "evaluate")
    headline: tuple[str, str]  # the figure its log lines lead with, and its reference
    registered_metrics: Callable[[], tuple[str, ...]]  # copied onto a version's tags
    registry_columns: tuple[tuple[str, str], ...]  # `aigc registry show`: (title, metric)

    def __str__(self) -> str:
        return self.name


def lazy(reference: str) -> Callable[..., Any]:
    """The function at "module:name", imported when first called: a modality's stages pull in
    torch, and `aigc --help` or `aigc registry show` must not."""

    def call(*args: Any, **kwargs: Any) -> Any:
        return resolve(reference)(*args, **kwargs)

    call.__qualname__ = call.__name__ = reference
    return call


def lazy_value(reference: str) -> Callable[[], Any]:
    """The value at "module:name", imported when asked for (`lazy`'s reason)."""

    def value() -> Any:
        return resolve(reference)

    value.__qualname__ = value.__name__ = reference
    return value


def register_modality(modality: Modality) -> Modality:
    """Make `modality` available by name; re-registering the same one is harmless."""
    return _MODALITIES.register(modality)


def unregister_modality(name: str) -> None:
    """Forget a registered modality (a plug-in's or a test's); built-ins come back on use."""
    _MODALITIES.unregister(name)


def modality_names() -> tuple[str, ...]:
    """The built-in modalities first, in pipeline order (text, image), then registered ones."""
    return _MODALITIES.names()


def chosen_modalities(only: list[str] | None) -> tuple[str, ...]:
    """`--only` checked against the modalities there are (all when empty), in their order."""
    names = modality_names()
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise UserError(f"--only {', '.join(unknown)}: choose from {', '.join(names)}")
    return tuple(name for name in names if not only or name in only)


def get_modality(name: str | Modality) -> Modality:
    if isinstance(name, Modality):
        return name
    found = _MODALITIES.find(name)
    if found is None:
        raise UserError(f"unknown modality {name!r}: choose from {', '.join(modality_names())}")
    return found


def data_of(modality: Modality) -> DataLayout:
    """The modality's data layout; a UserError for one whose data is made elsewhere."""
    if modality.data is None:
        raise UserError(
            f"the {modality.name} modality has no data stages: its data is made elsewhere"
        )
    return modality.data
