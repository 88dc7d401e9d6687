"""Images through every stage, once: the suite's one end-to-end image test.

Slow: the digits' data flow (1,797 images cleaned, hashed and labeled), three image trainings
on Ray (the run's, the reproduction's and `aigc train --modality image`'s) and the evaluation's
classifier. Real Prefect (the session's test API), Ray, MLflow (sqlite) and DVC; the text tests
run text only; the model verbs (evaluate, train, promote) run here with `--modality image`.
That each image family learns, and that a GAN resumes exactly from a checkpoint's files, is tested
single-process in tests/unit/test_image_models.py; the Ray runner is family-blind (its
restarts are tested with the LSTM in tests/flows/test_training.py).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aigc.data.version import current_version
from aigc.image.modality import IMAGE
from aigc.registry.registry import CHAMPION, by_alias, versions
from flows.retrain import retrain
from tests.conftest import aigc_in_process

pytestmark = pytest.mark.slow


def test_an_image_generator_is_trained_registered_served_and_reproduced(
    pipeline_project, prefect_api, ray_runtime
):
    root, settings = pipeline_project
    first = retrain(root=str(root), only=["image"])["image"]
    # The first model only has to beat the trivial generator (class means plus noise).
    assert first.status == "promoted", first.reasons
    assert any("trivial" in reason for reason in first.reasons), first.reasons
    (image,) = versions(settings, "aigc-image")
    assert by_alias(settings, "aigc-image", CHAMPION).version == "1"
    assert (
        image.tags["aigc.data_version"] == current_version(root, IMAGE.data) == first.data_version
    )
    run = settings.client().get_run(image.run_id)
    assert run.data.tags["aigc.modality"] == "image"
    metrics = run.data.metrics
    assert metrics["frechet_distance"] < metrics["trivial_frechet_distance"]
    assert {"coverage", "conditional_accuracy", "floor_frechet_distance"} <= set(metrics)
    # trained on Ray's two workers, each on batches of its own (TINY: 32 images a batch)
    assert metrics["images_seen"] == int(run.data.tags["aigc.steps"]) * 32 * 2
    artifacts = [item.path for item in settings.client().list_artifacts(image.run_id, "samples")]
    assert "samples/samples.png" in artifacts
    assert versions(settings, "aigc-text") == [], "--only image trains no text model"

    # Served: a grid of the champion's samples, one row per asked label.
    grid = root / "grid.png"
    made = aigc_in_process(
        root, "generate", "--model-uri", "models:/aigc-image@champion",
        "--label", "7", "--label", "1", "-n", "3", "--out", str(grid),
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    scale, gap = 4, 2  # image.evaluate's grid_scale and grid_gap
    pixels = np.asarray(Image.open(grid))
    assert pixels.shape == (2 * (8 * scale + gap) + gap, 3 * (8 * scale + gap) + gap)

    # Rebuilt from its data version: the same weights, the same metrics.
    reproduced = aigc_in_process(root, "reproduce", "aigc-image/1")
    assert reproduced.exit_code == 0, reproduced.output
    assert "the reproduction matches" in reproduced.output and "identical" in reproduced.output

    # The model verbs for images: evaluate the champion, train one more (not registered), and
    # the gate on the registry's challenger (version 1, the champion: judged against the
    # trivial generator again), as the retrain flow's own steps.
    evaluated = aigc_in_process(
        root, "evaluate", "--modality", "image", "--model-uri", "models:/aigc-image@champion"
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "frechet_distance" in evaluated.output and "conditional_accuracy" in evaluated.output
    trained = aigc_in_process(root, "train", "--modality", "image", "--no-evaluate")
    assert trained.exit_code == 0, trained.output
    assert f"on data version {first.data_version[:12]}" in trained.output
    assert len(versions(settings, "aigc-image")) == 1, "train alone registers nothing"
    promoted = aigc_in_process(root, "promote", "--modality", "image")
    assert promoted.exit_code == 0, promoted.output
    assert "challenger version 1: promoted" in promoted.output
    assert any("trivial" in line for line in promoted.output.splitlines()), promoted.output
    unknown = aigc_in_process(root, "train", "--modality", "audio")
    assert unknown.exit_code == 2 and "unknown modality 'audio'" in unknown.output
