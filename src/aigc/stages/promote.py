"""The `promote` stage: the gate. A challenger replaces the champion only when measurably better.

    champion = rival(current_champion(paths, params), challenger)  # None: vs the baseline
    decision = promote(paths, params, challenger, evaluation, champion, champion_evaluation)

Both evaluations come from the same test split (the champion is re-evaluated on the
challenger's data version by the evaluate stage). `decide` is pure
(aigc.registry.decide); `apply_decision` records it and moves the alias.
"""

from __future__ import annotations

from aigc import timing
from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.registry.decide import Decision, decide
from aigc.registry.registry import CHAMPION, ModelVersion, apply_decision, by_alias
from aigc.stages.evaluate import Evaluation
from aigc.tracking import TrackingSettings


def current_champion(paths: ProjectPaths, params: Params) -> ModelVersion | None:
    """The registered model's champion, if it has one."""
    settings = TrackingSettings.of(params.tracking, paths.root)
    return by_alias(settings, params.registry.model_name, CHAMPION)


def rival(champion: ModelVersion | None, challenger: ModelVersion) -> ModelVersion | None:
    """The champion the challenger must beat: None when there is none, or it is itself."""
    if champion is None or champion.version == challenger.version:
        return None
    return champion


@timing.timed("promote")
def promote(
    paths: ProjectPaths,
    params: Params,
    challenger: ModelVersion,
    evaluation: Evaluation,
    champion: ModelVersion | None = None,
    champion_evaluation: Evaluation | None = None,
) -> Decision:
    settings = TrackingSettings.of(params.tracking, paths.root)
    champion_card = None
    if champion is not None and champion_evaluation is not None:
        champion_card = champion_evaluation.scorecard(champion.name, champion.version)
    decision = decide(
        evaluation.scorecard(challenger.name, challenger.version),
        champion_card,
        params.registry.policy,
    )
    apply_decision(settings, challenger, by_alias(settings, challenger.name, CHAMPION), decision)
    return decision
