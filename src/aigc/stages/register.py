"""The `register` stage: a trained, evaluated model becomes a registry version, alias challenger.

challenger = register(paths, params, trained, evaluation, key)
"""

from __future__ import annotations

from aigc import timing
from aigc.config import Modality, Params
from aigc.evaluate import HEADLINE_METRICS
from aigc.evaluate.image_report import IMAGE_HEADLINE_METRICS
from aigc.paths import ProjectPaths
from aigc.registry.registry import ModelVersion, register_challenger
from aigc.stages.evaluate import Evaluation
from aigc.stages.train import TrainedModel
from aigc.tracking import TrackingSettings, git_commit


@timing.timed("register")
def register(
    paths: ProjectPaths,
    params: Params,
    trained: TrainedModel,
    evaluation: Evaluation,
    key: str,
    modality: Modality = "text",
) -> ModelVersion:
    view = params.for_modality(modality)
    headline = HEADLINE_METRICS if modality == "text" else IMAGE_HEADLINE_METRICS
    return register_challenger(
        TrackingSettings.of(view.tracking, paths.root),
        view.registry.model_name,
        trained.model_uri,
        key,
        tags={
            "aigc.data_version": trained.data_version,
            "aigc.git_commit": git_commit(paths.root),
            "aigc.params_hash": params.section_hash(
                *(("train", "evaluate") if modality == "text" else ("image",))
            ),
            "aigc.run_id": trained.run_id,
            **trained.lineage,
        },
        metrics={
            name: evaluation.metrics[name] for name in headline if name in evaluation.metrics
        },
    )
