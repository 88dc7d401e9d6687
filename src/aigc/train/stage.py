"""The `train` and `evaluate` stages' edges: from a data version to a tracked, evaluated model.

    trained = train_stage(paths, params)                 # the data version in data/labeled
    report = evaluate_stage(paths, params, model_uri)    # any logged model, on the test split

train_stage, in order: check that data/labeled is the version dvc.lock names (or take a
given dataset folder and version), train the tokenizer and encode the splits (driver), open
the MLflow run (params, tags: data version, git commit, params hash; the dataset as an input
with the DVC hash as digest), train on Ray, evaluate on Ray, log metrics, the loss curve,
samples per label, the evaluation report and the model as an MLflow pyfunc, close the run.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from aigc.config import Params
from aigc.data.records import SPLITS
from aigc.evaluate import EvalSettings, EvaluationReport
from aigc.fingerprint import code_version
from aigc.paths import ProjectPaths
from aigc.text.dataset import unigram_bits_per_char
from aigc.tracking import (
    DatasetInfo,
    TrackingSettings,
    TrainingRun,
    git_commit,
    log_generator_model,
    run_tags,
)
from aigc.train.job import prepare_job
from aigc.train.plots import write_loss_curve


@dataclass(frozen=True)
class TrainedModel:
    run_id: str
    model_uri: str
    data_version: str
    metrics: dict[str, float]
    samples: dict[str, list[str]]
    seconds: float


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset on disk and the data version it is."""

    path: Path
    version: str

    def split(self, name: str) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist: run `aigc data refresh` first")
        return pd.read_parquet(path)


def current_dataset(paths: ProjectPaths) -> Dataset:
    """data/labeled, checked against dvc.lock so the version tag tells the truth."""
    from aigc.data.version import current_version, status

    version = current_version(paths.root)
    stale = status(paths.root)
    if any("label" in stage for stage in stale):
        raise RuntimeError(
            f"data/labeled does not match dvc.lock ({stale}); restore it with "
            "`dvc checkout data/labeled` or rebuild it with `aigc data refresh`"
        )
    return Dataset(paths.labeled, version)


def tracking_settings(paths: ProjectPaths, params: Params) -> TrackingSettings:
    return TrackingSettings.from_params(params.tracking.model_dump()).resolve(paths.root)


def eval_settings(params: Params) -> EvalSettings:
    section = params.evaluate.model_dump()
    section.pop("shards")
    return EvalSettings(**section)


def train_stage(
    paths: ProjectPaths,
    params: Params,
    dataset: Dataset | None = None,
    on_progress: Callable[[dict[str, float]], None] | None = None,
    extra_tags: dict[str, str] | None = None,
) -> TrainedModel:
    from aigc.train.ray_runner import RunLink, evaluate_on_ray, train_on_ray

    started = time.perf_counter()
    dataset = dataset or current_dataset(paths)
    train, validation, test = (dataset.split(name) for name in SPLITS)
    job = prepare_job(train, validation, params.train)
    baseline = unigram_bits_per_char(train["text"].tolist(), test["text"].tolist())

    settings = tracking_settings(paths, params)
    run_params = params.model_dump(mode="json", include={"train", "evaluate", "split"})
    tags = run_tags(
        dataset.version,
        git_commit(paths.root),
        params.section_hash("train", "evaluate"),
        extra={
            "aigc.family": params.train.family,
            "aigc.code_version": code_version(),
            **(extra_tags or {}),
        },
    )
    with TrainingRun.start(
        settings,
        run_name=f"{params.train.family}-{dataset.version[:8]}",
        params=run_params,
        tags=tags,
        dataset=DatasetInfo(
            name="labeled",
            digest=f"{dataset.version}.dir",
            source=str(dataset.path),
            profile={
                split: len(frame)
                for split, frame in zip(SPLITS, (train, validation, test), strict=True)
            },
        ),
    ) as run:
        run.log_dict(params.model_dump(mode="json"), "params.json")
        run.log_metrics(
            {
                "unigram_bits_per_character": baseline,
                "train_tokens": float(job.train_tokens.numel()),
            },
            step=0,
        )
        outcome = train_on_ray(
            job,
            params.train.ray,
            RunLink(settings, run.run_id),
            storage=paths.root / params.train.ray.storage_path,
            name=run.run_id,
            on_progress=on_progress,
        )
        report = evaluate_on_ray(
            outcome.bundle_dir,
            test,
            params.label,
            eval_settings(params),
            params.evaluate.shards,
            baseline,
        )
        save_evaluation(paths.evaluation(run.run_id), report)
        final_step = int(outcome.metrics.get("step", 0))
        run.log_metrics(report.metrics | {"restarts": float(outcome.restarts)}, step=final_step)
        _log_reports(run, report)
        model_uri = log_generator_model(run, outcome.bundle_dir, step=final_step)
        run.set_tags(
            {
                "aigc.model_uri": model_uri,
                "aigc.steps": str(final_step),
                "aigc.weights_sha256": weights_digest(outcome.bundle_dir),
            }
        )
    return TrainedModel(
        run_id=run.run_id,
        model_uri=model_uri,
        data_version=dataset.version,
        metrics={**outcome.metrics, **report.metrics},
        samples=report.samples,
        seconds=time.perf_counter() - started,
    )


def _log_reports(run: TrainingRun, report: EvaluationReport, loss_curve: bool = True) -> None:
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


def weights_digest(bundle_dir: Path) -> str:
    """sha256 over the model's tensors (names, dtypes, shapes, bytes), in name order."""
    import hashlib

    from aigc.generator import TextGenerator

    digest = hashlib.sha256()
    for name, tensor in sorted(TextGenerator.load(bundle_dir).model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_evaluation(folder: Path, report: EvaluationReport) -> Path:
    """Metrics and per-document scores on local disk, for a promotion decision to read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(report.metrics, indent=2, sort_keys=True))
    report.per_document.to_parquet(folder / "per_document.parquet", index=False)
    return folder


def format_samples(samples: dict[str, list[str]]) -> str:
    blocks = []
    for label, texts in sorted(samples.items()):
        body = "\n\n".join(f"[{index}] {text.strip()}" for index, text in enumerate(texts))
        blocks.append(f"=== {label} ===\n{body}")
    return "\n\n".join(blocks) + "\n"


def evaluate_stage(
    paths: ProjectPaths, params: Params, model_uri: str, dataset: Dataset | None = None
) -> tuple[EvaluationReport, str]:
    """Evaluate any logged model on the test split of a data version (default: current).

    The figures go to an MLflow run of their own (tagged with the model and the data
    version), beside the report returned; returns (report, run id)."""
    from aigc.tracking import load_generator
    from aigc.train.ray_runner import connect, evaluate_on_ray

    dataset = dataset or current_dataset(paths)
    settings = tracking_settings(paths, params)
    generator = load_generator(model_uri, settings)
    train, test = dataset.split("train"), dataset.split("test")
    baseline = unigram_bits_per_char(train["text"].tolist(), test["text"].tolist())
    connect(params.train.ray)
    with tempfile.TemporaryDirectory() as directory:
        bundle = generator.save(Path(directory) / "bundle")
        report = evaluate_on_ray(
            bundle, test, params.label, eval_settings(params), params.evaluate.shards, baseline
        )
    tags = run_tags(
        dataset.version,
        git_commit(paths.root),
        params.section_hash("evaluate"),
        extra={"aigc.evaluated_model_uri": model_uri, "aigc.kind": "evaluation"},
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
    save_evaluation(paths.evaluation(run.run_id), report)
    return report, run.run_id


def report_json(report: EvaluationReport) -> dict:
    return json.loads(report.to_json())
