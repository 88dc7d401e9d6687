"""Every stage's Prefect task through `task.fn()`, in pipeline order, on a real project.

The data tasks run DVC for real (clean and label through `dvc repro`, version pushes to a
folder remote); the model tasks train on real Ray (2 workers, tiny config), track in a
temporary sqlite MLflow store and register in its registry. Each task's output is the next
one's input, as in the flow, and each is checked for what it claims.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.logging import disable_run_logger

from aigc.config import load_params
from aigc.data.version import status
from aigc.registry.registry import CHAMPION, by_alias
from aigc.retrain import NO_CHANGE, TRAIN
from aigc.tracking import TrackingSettings
from tasks.clean import clean
from tasks.collect import collect
from tasks.evaluate import evaluate
from tasks.label import label
from tasks.plan import plan
from tasks.promote import promote
from tasks.register import register
from tasks.train import train
from tasks.version import version
from tests.conftest import tiny_overrides

pytestmark = pytest.mark.slow


def test_each_task_hands_the_next_its_input(project: Path, tmp_path: Path, ray_runtime):
    from aigc.config import write_effective_params
    from aigc.paths import ProjectPaths

    params = load_params(
        project / "params.yaml",
        tiny_overrides(tmp_path),
    )
    write_effective_params(params, ProjectPaths.at(project).effective_params)
    with disable_run_logger():
        collected = collect.fn(project, params)
        assert collected.snapshot.new and collected.snapshot.records == 60 and collected.raw_hash
        cleaned = clean.fn(project)
        assert cleaned.records + cleaned.quarantined == 60
        labeled = label.fn(project)
        assert labeled.counts["records"] == cleaned.records
        dataset = version.fn(project, params, collected, labeled)
        stale = status(project)
        text_stages = {stage: state for stage, state in stale.items() if "image" not in stage}
        assert len(dataset.version) == 32 and text_stages == {}  # (the image stages did not run)
        remote = Path(
            yaml.safe_load((project / "params.yaml").read_text())["version"]["remote_url"]
        )
        assert any(remote.rglob("*")), "the version was pushed to the remote"

        key, existing, first_plan = plan.fn(project, params, dataset.version, False)
        assert existing is None and first_plan.action == TRAIN
        trained = train.fn(project, params, dataset, key)
        assert trained.steps == 30 and trained.data_version == dataset.version
        evaluation = evaluate.fn(
            project, params, trained.model_uri, dataset, trained.run_id, trained.bundle_dir
        )
        assert evaluation.run_id == trained.run_id
        metrics = evaluation.metrics
        assert metrics["test_bits_per_character"] < metrics["unigram_bits_per_character"]
        challenger = register.fn(project, params, trained, evaluation, key)
        assert challenger.version == "1" and challenger.tags["aigc.training_key"] == key
        decision = promote.fn(project, params, challenger, evaluation, None, None)
        assert decision.promote, decision.reasons

        settings = TrackingSettings.of(params.tracking, project)
        assert by_alias(settings, params.registry.model_name, CHAMPION).version == "1"
        _, _, second_plan = plan.fn(project, params, dataset.version, False)
        assert second_plan.action == NO_CHANGE
