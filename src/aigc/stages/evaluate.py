"""The `evaluate` stage: a model on the test split of a data version, evaluated on Ray.

    evaluation = evaluate(paths, params, trained.model_uri, dataset, record_in=trained.run_id)
    evaluation = evaluate(paths, params, champion.uri, dataset)     # an evaluation run of its own
    card = evaluation.scorecard(name, version)                      # what the gate reads

The figures (bits per character against the unigram baseline, continuation scores,
diversity, label control) go to MLflow: into the training run that made the model
(`record_in`), or into a new run tagged with the model and the data version. Metrics and
per-document scores are also kept under .aigc/evaluations/<run id>/ for the promotion gate.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.errors import UserError
from aigc.evaluate import EvaluationReport
from aigc.evaluate.topic_classifier import TopicClassifier, fit_topic_classifier
from aigc.image.modality import view as image_view
from aigc.paths import ProjectPaths
from aigc.registry.decide import Scorecard
from aigc.stages.image import ImageDataset
from aigc.stages.version import Dataset
from aigc.text.dataset import unigram_bits_per_char
from aigc.tracking import DatasetInfo, TrackingSettings, TrainingRun, git_commit, run_tags
from aigc.train.plots import write_loss_curve

METRICS_FILE, SCORES_FILE = "metrics.json", "per_document.parquet"


@dataclass(frozen=True)
class Evaluation:
    run_id: str  # the MLflow run holding the figures
    model_uri: str
    data_version: str
    folder: Path  # metrics.json + per_document.parquet
    metrics: dict[str, float]
    samples: dict[str, list[str]]

    def scorecard(self, name: str, version: str | None) -> Scorecard:
        return Scorecard(
            metrics=self.metrics,
            per_document=pd.read_parquet(self.folder / SCORES_FILE),
            name=name,
            version=version,
            run_id=self.run_id,
        )


@timing.timed("evaluation")
def evaluate(
    paths: ProjectPaths,
    params: Params,
    model_uri: str,
    dataset: Dataset,
    record_in: str | None = None,
    bundle_dir: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate the model at `model_uri` (or its local copy `bundle_dir`) on `dataset`.

    `on_progress` hears a sentence as each part starts or each Ray shard finishes."""
    from aigc.ray import EVALUATION_NODES_TAG, connect, evaluate_on_ray

    say = on_progress or (lambda sentence: None)
    settings = TrackingSettings.of(params.tracking, paths.root)
    train, test = dataset.split("train"), dataset.split("test")
    baseline = unigram_bits_per_char(train["text"].tolist(), test["text"].tolist())
    classifier = topic_classifier(dataset, train, params)
    connect(params.train.ray, paths.work)
    with tempfile.TemporaryDirectory() as directory:
        if bundle_dir is None:
            from aigc.tracking import load_generator

            say(f"loading {model_uri}")
            bundle_dir = load_generator(model_uri, settings).save(Path(directory) / "bundle")
        say(
            f"evaluating {model_uri} on {len(test)} test documents of data version "
            f"{dataset.version[:12]} in up to {params.evaluate.shards} Ray shards: bits per "
            f"character (unigram baseline {baseline:.3f}), continuations of "
            f"{params.evaluate.continuation_documents} documents, label control with "
            f"{params.evaluate.samples_per_label} samples per label"
        )
        report, nodes = evaluate_on_ray(
            bundle_dir,
            test,
            params.label,
            params.evaluate,
            params.evaluate.shards,
            baseline,
            classifier,
            on_progress=on_progress,
        )
    if classifier is not None:
        report.metrics["topic_classifier_train_documents"] = float(classifier.train_documents)
    if record_in is not None:
        with TrainingRun.resume(settings, record_in) as run:
            steps = int(run.client.get_run(record_in).data.tags.get("aigc.steps", 0))
            run.log_metrics(report.metrics, step=steps)
            run.set_tags({EVALUATION_NODES_TAG: ",".join(nodes)})
            _log_reports(run, report, loss_curve=True)
        run_id = record_in
    else:
        placement = {EVALUATION_NODES_TAG: ",".join(nodes)}
        run_id = _evaluation_run(paths, params, settings, model_uri, dataset, report, placement)
    folder = save_evaluation(paths.evaluation(run_id), report)
    return Evaluation(
        run_id, model_uri, dataset.version, folder, dict(report.metrics), report.samples
    )


_CLASSIFIERS: dict[tuple[str, str], TopicClassifier] = {}


def topic_classifier(dataset: Dataset, train, params: Params) -> TopicClassifier | None:
    """The label-control yardstick of this data version: fitted once per version and labels
    (kept for the process: a run evaluates its challenger and its champion with the same)."""
    labels = sorted(params.label.topics)
    key = (dataset.version, ",".join(labels))
    if key not in _CLASSIFIERS:
        if (
            params.evaluate.samples_per_label == 0
            or train["label"][train["label"].isin(labels)].nunique() < 2
        ):
            return None  # nothing to grade, or nothing to tell apart
        _CLASSIFIERS[key] = fit_topic_classifier(train, labels)
    return _CLASSIFIERS[key]


def load_evaluation(paths: ProjectPaths, run_id: str, model_uri: str) -> Evaluation | None:
    """An evaluation saved earlier on this machine (None if there is none)."""
    folder = paths.evaluation(run_id)
    if not (folder / METRICS_FILE).exists():
        return None
    metrics = json.loads((folder / METRICS_FILE).read_text())
    return Evaluation(run_id, model_uri, "", folder, metrics, {})


def _evaluation_run(paths, params, settings, model_uri, dataset, report, placement) -> str:
    tags = run_tags(
        dataset.version,
        git_commit(paths.root),
        params.section_hash("evaluate"),
        extra={
            "aigc.evaluated_model_uri": model_uri,
            "aigc.kind": "evaluation",
            **placement,
        },
    )
    with TrainingRun.start(
        settings,
        run_name=f"evaluate-{dataset.version[:8]}",
        params=params.model_dump(mode="json", include={"evaluate"}),
        tags=tags,
        dataset=DatasetInfo(
            name="labeled",
            digest=f"{dataset.version}.dir",
            source=str(dataset.path),
            context="evaluation",
        ),
    ) as run:
        run.log_metrics(report.metrics, step=0)
        _log_reports(run, report, loss_curve=False)
    return run.run_id


def _log_reports(run: TrainingRun, report: EvaluationReport, loss_curve: bool) -> None:
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "evaluation.json").write_text(report.to_json())
        report.per_document.to_csv(folder / "per_document.csv", index=False)
        run.log_artifact(folder / "evaluation.json", "evaluation")
        run.log_artifact(folder / "per_document.csv", "evaluation")
        if loss_curve:
            curve = write_loss_curve(run.client, run.run_id, folder / "loss_curve.png")
            run.log_artifact(curve, "plots")
    run.log_text(format_samples(report.samples), "samples/samples_per_label.txt")


def save_evaluation(folder: Path, report: EvaluationReport) -> Path:
    """Metrics and per-document scores on local disk, for a promotion decision to read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).write_text(json.dumps(report.metrics, indent=2, sort_keys=True))
    report.per_document.to_parquet(folder / SCORES_FILE, index=False)
    return folder


def format_samples(samples: dict[str, list[str]]) -> str:
    blocks = []
    for label, texts in sorted(samples.items()):
        body = "\n\n".join(f"[{index}] {text.strip()}" for index, text in enumerate(texts))
        blocks.append(f"=== {label} ===\n{body}")
    return "\n\n".join(blocks) + "\n"


@timing.timed("evaluation")
def evaluate_images(
    paths: ProjectPaths,
    params: Params,
    model_uri: str,
    dataset: ImageDataset,
    record_in: str | None = None,
    bundle_dir: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate the image generator at `model_uri` (or its local copy `bundle_dir`) on the test
    split of `dataset`, in the features of a classifier fitted once per data version.

    Generation runs in this process: sampling the default thousand 8x8 images takes a
    second, far less than a Ray task's start."""
    from aigc.evaluate.image_classifier import cached_feature_classifier
    from aigc.evaluate.image_report import evaluate_image_generator, requested_labels
    from aigc.models.image import ImageGenerator

    say = on_progress or (lambda sentence: None)
    view = image_view(params)
    settings = TrackingSettings.of(view.tracking, paths.root)
    evaluate = params.image.evaluate
    splits = dataset.splits()
    train, test = splits["train"], splits["test"]
    say(f"feature classifier of image data version {dataset.version[:12]}")
    classifier = cached_feature_classifier(
        paths.work / "classifiers" / f"image-{dataset.version}.pt",
        train,
        test,
        evaluate.classifier,
        dataset.version,
    )
    if bundle_dir is not None:
        generator = ImageGenerator.load(bundle_dir)
    else:
        from aigc.tracking import load_generator

        say(f"loading {model_uri}")
        generator = load_generator(model_uri, settings)
    if list(generator.classes) != list(test.classes):
        raise UserError(
            f"{model_uri} generates the classes {list(generator.classes)}, but image data "
            f"version {dataset.version[:12]} has {list(test.classes)}: evaluate it on the data "
            "version it was trained on (`aigc reproduce`), or train a new model"
        )
    say(
        f"evaluating {model_uri}: {evaluate.samples_per_class} samples per class against "
        f"{len(test)} test images, with the floor and the trivial generator beside it"
    )
    result = evaluate_image_generator(
        lambda requested, seed: generator.sample(requested.tolist(), seed).numpy(),
        classifier,
        train,
        test,
        evaluate,
    )
    metrics = dict(result.metrics) | _likelihood(generator, test)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        requested = requested_labels(len(test.classes), evaluate.grid_per_class)
        grid = _sample_grid(generator, requested, evaluate, folder / "samples.png")
        if record_in is not None:
            with TrainingRun.resume(settings, record_in) as run:
                steps = int(run.client.get_run(record_in).data.tags.get("aigc.steps", 0))
                run.log_metrics(metrics, step=steps)
                _log_image_reports(run, metrics, result.per_sample, grid, loss_curves=True)
            run_id = record_in
        else:
            tags = run_tags(
                dataset.version,
                git_commit(paths.root),
                view.section_hash("image"),
                extra={"aigc.evaluated_model_uri": model_uri, "aigc.kind": "evaluation"},
            )
            with TrainingRun.start(
                settings,
                run_name=f"evaluate-{dataset.version[:8]}",
                params=view.model_dump(mode="json", include={"image": {"evaluate"}}),
                tags=tags,
                dataset=DatasetInfo(
                    name="labeled",
                    digest=f"{dataset.version}.dir",
                    source=str(dataset.path),
                    context="evaluation",
                ),
            ) as run:
                run.log_metrics(metrics, step=0)
                _log_image_reports(run, metrics, result.per_sample, grid, loss_curves=False)
            run_id = run.run_id
        folder = paths.evaluation(run_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
        result.per_sample.to_parquet(folder / SCORES_FILE, index=False)
        grid = Path(shutil.copy(grid, folder / grid.name))
    return Evaluation(run_id, model_uri, dataset.version, folder, metrics, {"grid": [str(grid)]})


def _likelihood(generator, test) -> dict[str, float]:
    """`test_bits_per_dim` for a family with a likelihood (the VAE's negative ELBO, an upper
    bound on -log2 p(x) per pixel channel); nothing for the others."""
    import torch

    from aigc.models import vae
    from aigc.models.image import to_pixels

    if generator.family != "vae":
        return {}
    bits = vae.bits_per_dim(
        generator.model,
        to_pixels(torch.as_tensor(test.pixels)),
        torch.as_tensor(test.labels, dtype=torch.long),
    )
    return {"test_bits_per_dim": float(bits.mean())}


def _sample_grid(generator, requested, evaluate, path: Path) -> Path:
    """One row per class, `grid_per_class` samples each, from the evaluation's seed."""
    from aigc.evaluate.image_grid import write_sample_grid

    samples = generator.sample(requested.tolist(), evaluate.seed).numpy()
    return write_sample_grid(
        samples,
        requested,
        path,
        classes=len(generator.classes),
        per_class=evaluate.grid_per_class,
        scale=evaluate.grid_scale,
        gap=evaluate.grid_gap,
    )


def _log_image_reports(run, metrics, per_sample, grid: Path, loss_curves: bool) -> None:
    from aigc.evaluate.image_grid import write_loss_curves

    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "evaluation.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
        per_sample.drop(columns=[c for c in per_sample if c.startswith("feature_")]).to_csv(
            folder / "per_sample.csv", index=False
        )
        run.log_artifact(folder / "evaluation.json", "evaluation")
        run.log_artifact(folder / "per_sample.csv", "evaluation")
        run.log_artifact(grid, "samples")
        if loss_curves:
            keys = [key for key in run.client.get_run(run.run_id).data.metrics if "loss" in key]
            curves = {
                key: [
                    (item.step, item.value)
                    for item in run.client.get_metric_history(run.run_id, key)
                ]
                for key in sorted(keys)
                if key.startswith(("train_loss", "val_loss"))
            }
            run.log_artifact(write_loss_curves(curves, folder / "loss_curves.png"), "plots")
