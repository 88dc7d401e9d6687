"""The `evaluate` stage: a model on the test split of a data version, its figures recorded.

    evaluation = evaluate(paths, params, trained.model_uri, dataset, record_in=trained.run_id)
    evaluation = evaluate(paths, params, champion.uri, dataset)     # an evaluation run of its own
    card = evaluation.scorecard(name, version)                      # what the gate reads

The dataset's modality assesses the model (`assess`: text on Ray shards, aigc.text.evaluate;
images in process, aigc.image.evaluate) into an `Assessment`; this stage records it, the same
way for every modality: the figures and files go to MLflow, into the training run that made
the model (`record_in`, with its loss curves) or into a new run tagged with the model and the
data version; metrics and per-document scores are also kept under
.aigc/evaluations/<run id>/ for the promotion gate.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.modality import get_modality
from aigc.paths import ProjectPaths
from aigc.registry.decide import Scorecard
from aigc.tracking import DatasetInfo, TrackingSettings, TrainingRun, git_commit, run_tags
from aigc.train.plots import write_loss_curve

METRICS_FILE, SCORES_FILE = "metrics.json", "per_document.parquet"


@dataclass(frozen=True)
class Assessment:
    """What a modality's evaluation found, before the stage records it."""

    metrics: dict[str, float]
    per_document: pd.DataFrame  # a row per test document or sample: the gate resamples them
    artifacts: dict[str, tuple[Path, ...]]  # MLflow artifact folder -> files (in the scratch)
    samples: dict[str, list[str]] = field(default_factory=dict)  # shown in logs, per label
    tags: dict[str, str] = field(default_factory=dict)  # recorded on the run (where it ran)
    keep: tuple[Path, ...] = ()  # files also kept beside the saved evaluation (a sample grid)


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
    dataset: Any,
    record_in: str | None = None,
    bundle_dir: Path | None = None,
    on_progress: Callable[[str], None] | None = None,
) -> Evaluation:
    """Evaluate the model at `model_uri` (or its local copy `bundle_dir`) on `dataset`.

    `on_progress` hears a sentence as each part starts (text: as each Ray shard finishes)."""
    modality = get_modality(dataset.modality)
    view = modality.view(params)
    settings = TrackingSettings.of(view.tracking, paths.root)
    with tempfile.TemporaryDirectory() as directory:
        scratch = Path(directory)
        found = modality.assess(
            paths, params, model_uri, dataset, bundle_dir, scratch, on_progress
        )
        if record_in is not None:
            with TrainingRun.resume(settings, record_in) as run:
                steps = int(run.client.get_run(record_in).data.tags.get("aigc.steps", 0))
                run.log_metrics(found.metrics, step=steps)
                run.set_tags(found.tags)
                _log_files(run, found)
                curve = write_loss_curve(run.client, run.run_id, scratch / "loss_curve.png")
                run.log_artifact(curve, "plots")
            run_id = record_in
        else:
            run_id = _evaluation_run(paths, view, modality, settings, model_uri, dataset, found)
        folder = save_evaluation(paths.evaluation(run_id), found.metrics, found.per_document)
        kept = [Path(shutil.copy(path, folder / path.name)) for path in found.keep]
    samples = found.samples | {path.stem: [str(path)] for path in kept}
    return Evaluation(run_id, model_uri, dataset.version, folder, dict(found.metrics), samples)


def load_evaluation(paths: ProjectPaths, run_id: str, model_uri: str) -> Evaluation | None:
    """An evaluation saved earlier on this machine (None if there is none)."""
    folder = paths.evaluation(run_id)
    if not (folder / METRICS_FILE).exists():
        return None
    metrics = json.loads((folder / METRICS_FILE).read_text())
    return Evaluation(run_id, model_uri, "", folder, metrics, {})


def _evaluation_run(paths, view, modality, settings, model_uri, dataset, found) -> str:
    """A run of its own for an evaluation of a model trained elsewhere (a champion, a
    registered version): the modality's evaluate section as its params."""
    section, *inner = modality.evaluate_section
    tags = run_tags(
        dataset.version,
        git_commit(paths.root),
        view.section_hash(section),
        extra={"aigc.evaluated_model_uri": model_uri, "aigc.kind": "evaluation", **found.tags},
    )
    include: Any = {section: set(inner)} if inner else {section}
    with TrainingRun.start(
        settings,
        run_name=f"evaluate-{dataset.version[:8]}",
        params=view.model_dump(mode="json", include=include),
        tags=tags,
        dataset=DatasetInfo(
            name="labeled",
            digest=f"{dataset.version}.dir",
            source=str(dataset.path),
            context="evaluation",
        ),
    ) as run:
        run.log_metrics(found.metrics, step=0)
        _log_files(run, found)
    return run.run_id


def _log_files(run: TrainingRun, found: Assessment) -> None:
    for folder, files in found.artifacts.items():
        for path in files:
            run.log_artifact(path, folder)


def save_evaluation(folder: Path, metrics: dict[str, float], per_document: pd.DataFrame) -> Path:
    """Metrics and per-document scores on local disk, for a promotion decision to read."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / METRICS_FILE).write_text(json.dumps(metrics, indent=2, sort_keys=True))
    per_document.to_parquet(folder / SCORES_FILE, index=False)
    return folder
