"""The `train` stage: a data version -> a trained generator in an MLflow run, trained on Ray.

    trained = train(paths, params, dataset)                 # text
    trained = train_images(paths, params, image_dataset)    # images: the same run, on Ray

In order: train the tokenizer and encode the splits (driver), start or join Ray, open the
MLflow run (the effective params, tags: data version, git commit, code version, params hash;
the dataset as an input with the DVC hash as digest), train on Ray (rank 0 logs the curves),
then log the model as a pyfunc, the steps and the weights' hash, and close the run.
Evaluation is the next stage (`aigc.stages.evaluate`), which records its figures in the same
run. The MLflow run and Ray's checkpoint folder are noted in this process's run record
(`aigc.runtime`), so a run killed mid-way is marked FAILED and cleaned up by the next one.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aigc import runtime, timing
from aigc.config import Params, is_uri
from aigc.data.records import SPLITS
from aigc.fingerprint import code_version
from aigc.image.modality import view as image_view
from aigc.paths import ProjectPaths
from aigc.stages.image import ImageDataset
from aigc.stages.version import Dataset
from aigc.tracking import (
    DatasetInfo,
    TrackingSettings,
    TrainingRun,
    git_commit,
    log_generator_model,
    run_tags,
)
from aigc.train.job import Job, prepare_job


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
    """A text generator from a text data version (tokenizer trained and splits encoded here)."""
    train_frame, validation, test = dataset.splits()
    with timing.timed("tokenizer and encoding"):
        job = prepare_job(train_frame, validation, params.train, root=paths.root)
    frames = (train_frame, validation, test)
    return _train_on_ray(
        paths,
        params,
        job,
        dataset.version,
        dataset.path,
        {split: len(frame) for split, frame in zip(SPLITS, frames, strict=True)},
        sections={"train", "evaluate", "split"},
        first_metrics={"train_tokens": float(job.train_tokens.numel())},
        on_progress=on_progress,
        extra_tags={"aigc.modality": "text", **base_lineage(job.model), **(extra_tags or {})},
    )


def base_lineage(config: object) -> dict[str, str]:
    """A fine-tuned model's base (path, architecture, size, content hash) as run tags."""
    from aigc.models.configs import HFConfig

    if not isinstance(config, HFConfig):
        return {}
    from aigc.models.hf import lineage_tags

    return lineage_tags(config)


def train_images(
    paths: ProjectPaths,
    params: Params,
    dataset: ImageDataset,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrainedModel:
    """An image generator from an image data version, on the same Ray cluster as text."""
    from aigc.train.job import prepare_image_job

    splits = dataset.splits()
    job = prepare_image_job(splits["train"], splits["validation"], params.image.train)
    return _train_on_ray(
        paths,
        image_view(params),
        job,
        dataset.version,
        dataset.path,
        {split: len(images) for split, images in splits.items()},
        sections={"image"},
        first_metrics={"train_images": float(len(splits["train"]))},
        on_progress=on_progress,
        extra_tags={"aigc.modality": "image", **(extra_tags or {})},
    )


def _train_on_ray(
    paths: ProjectPaths,
    params: Params,
    job: Job,
    data_version: str,
    data_path: Path,
    profile: dict[str, int],
    sections: set[str],
    first_metrics: dict[str, float],
    on_progress: Callable[[dict[str, float]], None] | None,
    extra_tags: dict[str, str] | None,
) -> TrainedModel:
    """Either modality's job trained on Ray inside an MLflow run that records `sections` of
    the params, the data version as the run's dataset input, and the model at the end."""
    from aigc.ray import RunLink, connect, train_on_ray

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
            **(extra_tags or {}),
        },
    )
    with TrainingRun.start(
        settings,
        run_name=f"{job.family}-{data_version[:8]}",
        params=params.model_dump(mode="json", include=sections),
        tags=tags,
        dataset=DatasetInfo(
            name="labeled", digest=f"{data_version}.dir", source=str(data_path), profile=profile
        ),
    ) as run:
        run.log_dict(params.model_dump(mode="json"), "params.json")
        record.note_mlflow_run(settings.tracking_uri, run.run_id)
        run.log_metrics(first_metrics, step=0)
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
        lineage={"aigc.family": job.family, **base_lineage(job.model)},
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
