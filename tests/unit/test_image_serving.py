"""An image generator through MLflow: logged as a pyfunc, loaded back, sampled from the CLI.

A tiny conditional VAE is trained for a few steps on scikit-learn's digits, logged into a real
MLflow sqlite store in a temporary project and registered as `aigc-image@champion`; the PNGs
the pyfunc returns (here and in a fresh Python process) and the grid `aigc generate` writes
must hold exactly the pixels `ImageGenerator.sample` gives for the same labels and seed.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from mlflow.models import Model
from PIL import Image

from aigc.config import TrackingParams
from aigc.image.generator import ImageGenerator, UnknownClass
from aigc.models import build_model
from aigc.serving.pyfunc import sample_frame, sample_request
from aigc.stages.train import weights_digest
from aigc.text.generator import TextGenerator
from aigc.text.tokenizer import TextTokenizer
from aigc.tracking import (
    TrackingSettings,
    TrainingRun,
    load_generator,
    log_generator_model,
    register_model,
)
from aigc.train.job import train_single_process
from tests.conftest import REPO
from tests.unit.test_image_models import TINY, job_for

CLASSES = [str(digit) for digit in range(10)]


@pytest.fixture(scope="module")
def generator() -> ImageGenerator:
    """A VAE after 10 steps: its samples are smudges, but deterministic for a seed."""
    job = job_for("vae", max_steps=10)
    model, _ = train_single_process(job)
    return job.bundle(model)


@pytest.fixture(scope="module")
def logged(tmp_path_factory, generator: ImageGenerator) -> dict:
    """A project folder whose default store (mlflow/ under it) holds the generator, logged by
    a run and registered as version 1 of aigc-image, alias champion."""
    root = tmp_path_factory.mktemp("project")
    settings = TrackingSettings.of(TrackingParams(), root)
    bundle = generator.save(root / "bundle")
    with TrainingRun.start(settings, "tiny-vae", {"model": {"family": "vae"}}) as run:
        model_uri = log_generator_model(run, bundle, step=10)
    register_model(settings, model_uri, "aigc-image", alias="champion")
    location = settings.client().get_logged_model(model_uri.removeprefix("models:/"))
    return {
        "root": root,
        "settings": settings,
        "uri": model_uri,
        "bundle": bundle,
        "folder": location.artifact_location.removeprefix("file://"),
    }


def decode(png: bytes) -> np.ndarray:
    """PNG bytes -> uint8 (H, W, C), the layout of ImageGenerator.sample."""
    picture = np.asarray(Image.open(io.BytesIO(png)))
    return picture[..., None] if picture.ndim == 2 else picture


def state_digest(model: torch.nn.Module) -> str:
    """What weights_digest hashed before it read image bundles too: the loaded model's tensors."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def test_an_image_bundle_is_logged_as_an_image_pyfunc(
    logged: dict, generator: ImageGenerator
) -> None:
    info = Model.load(Path(logged["folder"]) / "MLmodel")
    assert [column.name for column in info.signature.inputs.inputs] == [
        "label",
        "n",
        "seed",
        "guidance",
    ]
    assert info.signature.inputs.required_input_names() == ["label"]
    requirements = (Path(logged["folder"]) / "requirements.txt").read_text().split()
    assert {line.split("==")[0] for line in requirements} == {
        "mlflow",
        "torch",
        "pillow",
        "pandas",
        "numpy",
    }
    code = (Path(logged["folder"]) / "aigc_generator_model.py").read_text()
    assert "set_model(ImageGeneratorPyfunc())" in code
    # MLflow's own loading and input checks, in this process (a fresh one: the slow test below)
    model = mlflow.pyfunc.load_model(logged["folder"])
    (row,) = model.predict(pd.DataFrame({"label": ["7"], "n": [2], "seed": [3]}))
    assert np.array_equal(np.stack([decode(png) for png in row]), generator.sample(["7"] * 2, 3))


def test_load_generator_gives_the_image_generator_back(
    logged: dict, generator: ImageGenerator
) -> None:
    for uri in (logged["uri"], "models:/aigc-image@champion", logged["folder"]):
        loaded = load_generator(uri, logged["settings"])
        assert isinstance(loaded, ImageGenerator), uri
        assert loaded.classes == CLASSES and loaded.family == "vae"
        assert torch.equal(loaded.sample(["3", "7"], seed=4), generator.sample(["3", "7"], 4))
    assert weights_digest(logged["bundle"]) == state_digest(generator.model)


def test_weights_digest_of_a_text_bundle_is_unchanged(tmp_path: Path) -> None:
    texts = [f"The thread waits for the lock in case {index}." for index in range(20)]
    tokenizer = TextTokenizer.train(texts, labels=["a"], vocab_size=300, min_frequency=1)
    config = {"vocab_size": 300, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
    model = build_model({"family": "gpt", **config}, seed=0).eval()
    TextGenerator(model=model, tokenizer=tokenizer, config=model.config).save(tmp_path)
    assert weights_digest(tmp_path) == state_digest(TextGenerator.load(tmp_path).model)


def test_each_row_is_one_sample_call(generator: ImageGenerator) -> None:
    frame = pd.DataFrame(
        {
            "label": ["3", "7", "3"],
            "n": [2, None, 0],
            "seed": [5, None, 1],
            "guidance": [2.0, None, None],  # not the vae's: ignored
        }
    )
    first, second, third = sample_frame(generator, frame)
    assert [len(first), len(second), len(third)] == [2, 1, 0]
    assert np.array_equal(np.stack([decode(png) for png in first]), generator.sample(["3"] * 2, 5))
    assert np.array_equal(decode(second[0])[None], generator.sample(["7"], seed=0))
    assert decode(first[0]).shape == (8, 8, 1)


def test_bad_requests_name_their_row_and_column(generator: ImageGenerator) -> None:
    with pytest.raises(UnknownClass, match=r"column 'label', row 1: unknown class '12'; .*'9'\]"):
        sample_frame(generator, pd.DataFrame({"label": ["3", "12"]}))
    with pytest.raises(ValueError, match="no 'label' column"):
        sample_frame(generator, pd.DataFrame({"class": ["3"]}))
    with pytest.raises(ValueError, match="column 'n', row 0: expected an integer >= 0"):
        sample_frame(generator, pd.DataFrame({"label": ["3"], "n": [-1]}))
    with pytest.raises(ValueError, match="column 'guidance', row 0"):
        sample_frame(generator, pd.DataFrame({"label": ["3"], "guidance": [-1.0]}))


def test_guidance_reaches_the_ddpm_sampler() -> None:
    model = build_model(
        {"family": "ddpm", "image_size": 8, "channels": 1, "num_classes": 10, **TINY["ddpm"]}
    )
    ddpm = ImageGenerator(model=model.eval(), classes=CLASSES)
    guided = sample_request(ddpm, "3", 2, seed=1, guidance=4.0)
    assert np.array_equal(guided, ddpm.sample(["3", "3"], 1, guidance=4.0))
    assert not np.array_equal(guided, sample_request(ddpm, "3", 2, seed=1, guidance=0.0))
    assert np.array_equal(sample_request(ddpm, "3", 2, seed=1), ddpm.sample(["3", "3"], 1))


# --- fresh processes ----------------------------------------------------------------------

FRESH_PROCESS = """
import base64, json, sys
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model(sys.argv[1])
answer = model.predict(pd.DataFrame(json.loads(sys.argv[2])))
print(json.dumps([[base64.b64encode(png).decode() for png in row] for row in answer]))
"""


def environment(logged: dict) -> dict[str, str]:
    """This checkout's code first (the preamble's PYTHONPATH), the test store as MLflow's."""
    path = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, path)),
        "MLFLOW_TRACKING_URI": logged["settings"].tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }


@pytest.mark.slow  # a fresh Python process importing mlflow and torch: ~6 s
def test_image_pyfunc_in_a_fresh_process_matches_sample(
    logged: dict, generator: ImageGenerator, tmp_path: Path
) -> None:
    frame = {"label": ["7", "0"], "n": [3, 2], "seed": [11, 11]}
    result = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, "models:/aigc-image@champion", json.dumps(frame)],
        cwd=tmp_path,
        env=environment(logged),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    for label, count, row in zip(frame["label"], frame["n"], rows, strict=True):
        images = np.stack([decode(base64.b64decode(png)) for png in row])  # (n, 8, 8, 1)
        assert np.array_equal(images, generator.sample([label] * count, seed=11))


def aigc(logged: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        cwd=logged["root"],
        env=environment(logged),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # the CLI in a fresh process: ~6 s
def test_generate_writes_a_grid_one_row_per_label(
    logged: dict, generator: ImageGenerator, tmp_path: Path
) -> None:
    out = tmp_path / "grid.png"
    labels = ["--label", "7", "--label", "1"]
    uri = "models:/aigc-image@champion"
    result = aigc(logged, "generate", "--model-uri", uri, *labels, "-n", "4", "--seed", "3",
                  "--out", str(out))  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    grid = np.asarray(Image.open(out))
    scale, gap = 4, 2  # image.evaluate's grid_scale and grid_gap
    assert grid.shape == (2 * (8 * scale + gap) + gap, 4 * (8 * scale + gap) + gap)
    for row, label in enumerate(["7", "1"]):
        top = gap + row * (8 * scale + gap)
        first = generator.sample([label] * 4, seed=3)[0, :, :, 0].numpy()
        assert np.array_equal(grid[top : top + 8 * scale : scale, gap : gap + 8 * scale : scale],
                              first)  # fmt: skip


@pytest.mark.slow  # the CLI in a fresh process: ~6 s
def test_generate_refuses_a_label_the_model_does_not_know(logged: dict, tmp_path: Path) -> None:
    result = aigc(logged, "generate", "--model-uri", "models:/aigc-image@champion",
                  "--label", "cat", "--out", str(tmp_path / "grid.png"))  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 2 and "Traceback" not in output, output
    assert output.strip().splitlines() == [
        f"error: --label 'cat': unknown class 'cat'; this model's classes are {CLASSES}"
    ]
    assert not (tmp_path / "grid.png").exists()
