"""The `train` stage: a data version -> a trained generator in an MLflow run, trained on Ray.

    trained = train(paths, params, dataset)     # any modality: the dataset names its own

In order: the dataset's modality prepares the job on the driver (text: the tokenizer and
token streams, aigc.text.training; images: pixels, aigc.image.training), start or join Ray,
open the MLflow run in the modality's experiment (the params it uses, tags: data version, git
commit, code version, params hash; the dataset as an input with the DVC hash as digest),
train on Ray (rank 0 logs the curves), then log the model as a pyfunc, the steps and the
weights' hash, and close the run. Evaluation is the next stage (`aigc.stages.evaluate`), which
records its figures in the same run. The MLflow run and Ray's checkpoint folder are noted in
this process's run record (`aigc.runtime`), so a run killed mid-way is marked FAILED and
cleaned up by the next one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aigc import runtime, timing
from aigc.config import Params, is_uri
from aigc.fingerprint import code_version
from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.stages.version import Dataset
from aigc.tracking import (
    DatasetInfo,
    TrackingSettings,
    TrainingRun,
    git_commit,
    log_generator_model,
    run_tags,
)

if TYPE_CHECKING:
    from aigc.train.job import TrainingInputs


@dataclass(frozen=True)
class TrainedModel:
    run_id: str
    model_uri: str
    data_version: str
    steps: int
    metrics: dict[str, float]  # the training curves' last values (train/val loss, ...)
    bundle_dir: Path  # the final model on this machine, while this process lives
    seconds: float
    lineage: dict[str, str] = field(default_factory=dict)  # family, and a fine-tune's base


def train(
    paths: ProjectPaths,
    params: Params,
    dataset: Dataset,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrainedModel:
    """A generator from a data version: its modality prepares the job (text: tokenizer and
    token streams; images: pixels), trained on Ray in the modality's experiment."""
    modality = get_modality(dataset.modality)
    inputs = modality.prepare_training(dataset, params, paths.root)
    return _train_on_ray(
        paths,
        modality.view(params),
        inputs,
        dataset,
        on_progress=on_progress,
        extra_tags={"aigc.modality": modality.name, **inputs.tags, **(extra_tags or {})},
    )


def _train_on_ray(
    paths: ProjectPaths,
    params: Params,
    inputs: TrainingInputs,
    dataset: Dataset,
    on_progress: Callable[[dict[str, float]], None] | None,
    extra_tags: dict[str, str],
) -> TrainedModel:
    """The job trained on Ray inside an MLflow run that records the inputs' sections of the
    params, the data version as the run's dataset input, and the model at the end."""
    from aigc.ray import RunLink, connect, train_on_ray

    job, sections, data_version = inputs.job, inputs.sections, dataset.version

    started = time.perf_counter()
    record = runtime.start(paths.work)
    settings = TrackingSettings.of(params.tracking, paths.root)
    with timing.timed("ray start"):
        connect(params.train.ray, paths.work)
    tags = run_tags(
        data_version,
        git_commit(paths.root),
        params.section_hash(*sorted(sections)),
        extra={
            "aigc.family": job.family,
            "aigc.code_version": code_version(),
            **extra_tags,
        },
    )
    with TrainingRun.start(
        settings,
        run_name=f"{job.family}-{data_version[:8]}",
        params=params.model_dump(mode="json", include=sections),
        tags=tags,
        dataset=DatasetInfo(
            name="labeled",
            digest=f"{data_version}.dir",
            source=str(dataset.path),
            profile=inputs.profile,
        ),
    ) as run:
        run.log_dict(params.model_dump(mode="json"), "params.json")
        record.note_mlflow_run(settings.tracking_uri, run.run_id)
        run.log_metrics(inputs.first_metrics, step=0)
        storage = params.train.ray.storage_path
        if not is_uri(storage):  # a folder of the project; a URI (s3://…) passes through
            storage = str(paths.root / storage)
            record.note_path(Path(storage) / run.run_id)
        outcome = train_on_ray(
            job,
            params.train.ray,
            RunLink(settings, run.run_id),
            storage=storage,
            name=run.run_id,
            model_dir=record.scratch / "models" / run.run_id,
            on_progress=on_progress,
        )
        steps = int(outcome.metrics.get("step", 0))
        with timing.timed("model logging"):
            run.log_metrics({"restarts": float(outcome.restarts)}, step=steps)
            model_uri = log_generator_model(run, outcome.bundle_dir, step=steps)
            run.set_tags(
                {
                    "aigc.model_uri": model_uri,
                    "aigc.steps": str(steps),
                    "aigc.weights_sha256": weights_digest(outcome.bundle_dir),
                }
            )
    return TrainedModel(
        run_id=run.run_id,
        model_uri=model_uri,
        data_version=data_version,
        steps=steps,
        metrics=dict(outcome.metrics) | {"restarts": float(outcome.restarts)},
        bundle_dir=outcome.bundle_dir,
        seconds=time.perf_counter() - started,
        lineage={"aigc.family": job.family, **inputs.tags},
    )


def weights_digest(bundle_dir: Path) -> str:
    """sha256 over the model's tensors (names, dtypes, shapes, bytes), in name order. Text and
    image bundles both keep their model in `model.pt`; the tokenizer or class names beside it
    are not weights."""
    from aigc.models.checkpoint import MODEL_FILE, load_model

    model, _, _, _ = load_model(Path(bundle_dir) / MODEL_FILE)
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
