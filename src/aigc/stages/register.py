"""The `register` stage: a trained, evaluated model becomes a registry version, alias challenger.

challenger = register(paths, params, trained, evaluation, key, get_modality("text"))
"""

from __future__ import annotations

from aigc import timing
from aigc.config import Params
from aigc.modality import Modality
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
    modality: Modality,
) -> ModelVersion:
    view = modality.view(params)
    return register_challenger(
        TrackingSettings.of(view.tracking, paths.root),
        view.registry.model_name,
        trained.model_uri,
        key,
        tags={
            "aigc.data_version": trained.data_version,
            "aigc.git_commit": git_commit(paths.root),
            "aigc.params_hash": params.section_hash(*modality.params_sections),
            "aigc.run_id": trained.run_id,
            **trained.lineage,
        },
        metrics={
            name: evaluation.metrics[name]
            for name in modality.registered_metrics()
            if name in evaluation.metrics
        },
    )
