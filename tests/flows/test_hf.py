"""Family hf: a pretrained Hugging Face causal LM through every stage, on real Prefect, Ray,
MLflow (sqlite) and DVC. The base models are tiny ones these tests make with transformers
(tests/hf_models.py); nothing is downloaded.

Slow: two Ray Train runs and one reproduction (about 15 s each). The GPT-2 base goes through
the retrain job on the session's trained project (a weak built-in GPT champion): trained,
evaluated, registered, decided; shown with its base by `registry show`; "no change" when run
again; reproduced to identical weights; refused at reproduction once the base changed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from aigc.config import load_params
from aigc.registry.registry import versions
from aigc.retrain import training_key
from aigc.tracking import load_generator
from flows.retrain import retrain
from tests.conftest import aigc_in_process
from tests.hf_models import tiny_gpt2
from tests.unit.test_tracking import FRESH_PROCESS

pytestmark = pytest.mark.slow

BASE = "models/gpt2-tiny"  # relative: a project's own folder, as a user would keep it
HF = f"train.model={{family: hf, path: {BASE}, block_size: 32}}"


def served_like_any_text_model(root, settings, label: str) -> None:
    """The registered fine-tune as MLflow serves it: a pyfunc loaded in a fresh process
    (transformers imported there), answering as aigc's own generator does."""
    frame = {"prompt": ["The", "A"], "label": [label, None], "max_new_tokens": [8, 8]}
    frame |= {"temperature": [0.8, 0.8], "seed": [2, 2]}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, "models:/aigc-text/2", json.dumps(frame)],
        cwd=root,
        env={**os.environ, "MLFLOW_TRACKING_URI": settings.tracking_uri},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    served, _ = json.loads(result.stdout.strip().splitlines()[-1])
    generator = load_generator("models:/aigc-text/2", settings)
    assert served == generator.generate(
        frame["prompt"], [label, None], max_new_tokens=8, temperature=0.8, seed=2
    )


def test_a_pretrained_gpt2_fine_tunes_through_the_retrain_job(trained_project):
    root, settings, first = trained_project
    tiny_gpt2(root / BASE)

    fine_tuned = retrain(root=str(root), overrides=[HF], only=["text"])["text"]
    assert fine_tuned.challenger_version == "2", fine_tuned.reasons
    assert fine_tuned.status in ("promoted", "rejected") and fine_tuned.reasons
    (version,) = [item for item in versions(settings, "aigc-text") if item.version == "2"]
    assert version.tags["aigc.family"] == "hf"
    assert version.tags["aigc.base_model.architecture"] == "GPT2LMHeadModel"
    assert version.tags["aigc.base_model.path"] == str((root / BASE).resolve())
    sha = version.tags["aigc.base_model.sha256"]
    run = settings.client().get_run(version.run_id)
    assert (
        run.data.metrics["test_bits_per_character"]
        < run.data.metrics["unigram_bits_per_character"]
    )

    shown = aigc_in_process(root, "registry", "show")
    assert shown.exit_code == 0 and "GPT2LMHeadModel" in shown.output and sha[:12] in shown.output

    label = sorted(first.labeled.counts["labels"])[0]
    sampled = aigc_in_process(
        root, "generate", "--model-uri", "models:/aigc-text/2", "--label", label, "-n", "2"
    )
    assert sampled.exit_code == 0 and sampled.output.strip(), sampled.output
    served_like_any_text_model(root, settings, label)

    again = retrain(root=str(root), overrides=[HF], only=["text"])["text"]
    assert again.status == "no change" and again.challenger_version == "2"

    reproduced = aigc_in_process(root, "reproduce", "aigc-text/2")
    assert reproduced.exit_code == 0, reproduced.output
    assert "identical" in reproduced.output

    # Another base (same architecture, other weights) is another model: a new training key,
    # and version 2 can no longer be reproduced from it.
    params = load_params(root / "params.yaml", [HF])
    before = training_key(first.dataset.version, params, "text", root)
    tiny_gpt2(root / BASE, seed=1)
    assert training_key(first.dataset.version, params, "text", root) != before
    refused = aigc_in_process(root, "reproduce", "aigc-text/2")
    assert refused.exit_code == 2, refused.output
    line = refused.output.strip()
    assert "\n" not in line and "Traceback" not in line, refused.output
    assert sha in line and "has changed" in line
    assert yaml.safe_load((root / "params.yaml").read_text())["train"]["model"].get("family") in (
        None,
        "gpt",
    ), "never written back"
