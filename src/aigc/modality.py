"""A modality: one kind of data and model (text, images) as the shared stages see it.

    modality = get_modality("image")
    key = training_key(data_version, params, modality, root)      # aigc.retrain
    trained = modality.train(paths, params, dataset, on_progress, extra_tags)
    evaluation = modality.evaluate(paths, params, trained.model_uri, dataset, ...)
    view = modality.view(params)         # its registered model, policy and experiment

Text and images are two instances (`aigc.text.modality.TEXT`, `aigc.image.modality.IMAGE`);
the plan, train, evaluate, register and promote tasks, the retrain flow and the CLI's model
verbs take one and ask it, instead of comparing names. A third is a module that defines a
`Modality` and one registration: a line in `_BUILTIN` below, or `register_modality(...)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aigc.errors import UserError
from aigc.references import resolve

# name -> "module:attribute" holding the modality; imported on first use.
_BUILTIN: dict[str, str] = {
    "text": "aigc.text.modality:TEXT",
    "image": "aigc.image.modality:IMAGE",
}
_REGISTRY: dict[str, Modality] = {}


@dataclass(frozen=True)
class Modality:
    """What the shared stages need to know of one modality; every field a value, no branch."""

    name: str  # "text", "image": the prefix of its task runs and its summary artifact
    # Its data stages, each (paths, params): collect -> CollectedSnapshot, clean ->
    # CleanedDataset, label -> LabeledDataset (what its DVC stages run); clean_in_dvc and
    # label_in_dvc, (paths) -> (the same, DVC's lines), run those DVC stages (skipped when
    # unchanged); version (paths, params, raw snapshot name, counts) -> VersionOutcome.
    collect: Callable[..., Any]
    clean: Callable[..., Any]
    label: Callable[..., Any]
    clean_in_dvc: Callable[..., Any]
    label_in_dvc: Callable[..., Any]
    version: Callable[..., Any]
    data_paths: Callable[[Any], Any]  # ProjectPaths -> its folders: raw, clean, labeled, reports
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
    # Its data version on disk: the current one (checked against DVC), or one at a folder.
    current_dataset: Callable[[Any], Any]
    dataset_at: Callable[[Path, str], Any]
    # Its stages: (paths, params, dataset, on_progress, extra_tags) -> TrainedModel, and
    # (paths, params, model_uri, dataset, record_in, bundle_dir, on_progress) -> Evaluation.
    train: Callable[..., Any]
    evaluate: Callable[..., Any]
    headline: tuple[str, str]  # the figure its log lines lead with, and its reference
    registered_metrics: Callable[[], tuple[str, ...]]  # copied onto a version's tags
    registry_columns: tuple[tuple[str, str], ...]  # `aigc registry show`: (title, metric)
    data_kind: Any  # aigc.data.version's layout of its versioned data (DVC stage, folders)

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
    existing = _REGISTRY.get(modality.name)
    if existing is not None and existing != modality:
        raise ValueError(f"a different modality is already registered as {modality.name!r}")
    _REGISTRY[modality.name] = modality
    return modality


def unregister_modality(name: str) -> None:
    """Forget a registered modality (a plug-in's or a test's); built-ins come back on use."""
    _REGISTRY.pop(name, None)


def modality_names() -> tuple[str, ...]:
    """The built-in modalities first, in pipeline order (text, image), then registered ones."""
    return tuple(_BUILTIN) + tuple(name for name in _REGISTRY if name not in _BUILTIN)


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
    if name not in _REGISTRY and name in _BUILTIN:
        register_modality(resolve(_BUILTIN[name]))
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UserError(
            f"unknown modality {name!r}: choose from {', '.join(modality_names())}"
        ) from None
