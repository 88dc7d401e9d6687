"""The `register` stage: a trained, evaluated model becomes a registry version, alias challenger.

challenger = register(paths, params, trained, evaluation, key)
"""

from __future__ import annotations

from aigc import timing
from aigc.config import Params
from aigc.evaluate import HEADLINE_METRICS
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
) -> ModelVersion:
    return register_challenger(
        TrackingSettings.of(params.tracking, paths.root),
        params.registry.model_name,
        trained.model_uri,
        key,
        tags={
            "aigc.data_version": trained.data_version,
            "aigc.git_commit": git_commit(paths.root),
            "aigc.params_hash": params.section_hash("train", "evaluate"),
            "aigc.run_id": trained.run_id,
        },
        metrics={
            name: evaluation.metrics[name]
            for name in HEADLINE_METRICS
            if name in evaluation.metrics
        },
    )
