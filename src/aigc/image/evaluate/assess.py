"""The image modality's evaluation, as the shared evaluate stage (aigc.stages.evaluate) runs it.

    found = assess(paths, params, model_uri, dataset, bundle_dir, scratch, on_progress)

In the features of a classifier fitted once per data version: Fréchet distance, KID,
precision/recall, conditional accuracy and spread (aigc.image.evaluate.report), the VAE's bits
per dimension, and a sample grid. It runs in this process, not in Ray shards as text's does:
sampling the default thousand 8x8 images takes about a second, less than a Ray task's start.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aigc.config import Params
from aigc.errors import UserError
from aigc.image.dataset import read_labeled
from aigc.image.modality import view as image_view
from aigc.paths import ProjectPaths
from aigc.stages.evaluate import Assessment
from aigc.tracking import TrackingSettings


def assess(
    paths: ProjectPaths,
    params: Params,
    model_uri: str,
    dataset: Any,
    bundle_dir: Path | None,
    scratch: Path,
    on_progress: Callable[[str], None] | None = None,
) -> Assessment:
    """The image generator at `model_uri` (or its local copy `bundle_dir`) on `dataset`'s
    test split."""
    from aigc.image.evaluate.classifier import cached_feature_classifier
    from aigc.image.evaluate.report import evaluate_image_generator, requested_labels
    from aigc.image.generator import ImageGenerator

    say = on_progress or (lambda sentence: None)
    settings = TrackingSettings.of(image_view(params).tracking, paths.root)
    evaluate = params.image.evaluate
    splits = read_labeled(dataset.path)
    train, test = splits["train"], splits["test"]
    say(f"feature classifier of image data version {dataset.version[:12]}")
    classifier = cached_feature_classifier(
        paths.work / "classifiers" / f"image-{dataset.version}.pt",
        train,
        test,
        evaluate.classifier,
        dataset.version,
    )
    if bundle_dir is not None:
        generator = ImageGenerator.load(bundle_dir)
    else:
        from aigc.tracking import load_generator

        say(f"loading {model_uri}")
        generator = load_generator(model_uri, settings)
    if list(generator.classes) != list(test.classes):
        raise UserError(
            f"{model_uri} generates the classes {list(generator.classes)}, but image data "
            f"version {dataset.version[:12]} has {list(test.classes)}: evaluate it on the data "
            "version it was trained on (`aigc reproduce`), or train a new model"
        )
    say(
        f"evaluating {model_uri}: {evaluate.samples_per_class} samples per class against "
        f"{len(test)} test images, with the floor and the trivial generator beside it"
    )
    result = evaluate_image_generator(
        lambda requested, seed: generator.sample(requested.tolist(), seed).numpy(),
        classifier,
        train,
        test,
        evaluate,
    )
    metrics = dict(result.metrics) | _likelihood(generator, test)
    requested = requested_labels(len(test.classes), evaluate.grid_per_class)
    grid = _sample_grid(generator, requested, evaluate, scratch / "samples.png")
    (scratch / "evaluation.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    features = [column for column in result.per_sample if column.startswith("feature_")]
    result.per_sample.drop(columns=features).to_csv(scratch / "per_sample.csv", index=False)
    return Assessment(
        metrics=metrics,
        per_document=result.per_sample,
        artifacts={
            "evaluation": (scratch / "evaluation.json", scratch / "per_sample.csv"),
            "samples": (grid,),
        },
        keep=(grid,),
    )


def _likelihood(generator, test) -> dict[str, float]:
    """`test_bits_per_dim` for a family with a likelihood (the VAE's negative ELBO, an upper
    bound on -log2 p(x) per pixel channel); nothing for the others."""
    import torch

    from aigc.models import vae
    from aigc.models.image import to_pixels

    if generator.family != "vae":
        return {}
    bits = vae.bits_per_dim(
        generator.model,
        to_pixels(torch.as_tensor(test.pixels)),
        torch.as_tensor(test.labels, dtype=torch.long),
    )
    return {"test_bits_per_dim": float(bits.mean())}


def _sample_grid(generator, requested, evaluate, path: Path) -> Path:
    """One row per class, `grid_per_class` samples each, from the evaluation's seed."""
    from aigc.image.evaluate.grid import write_sample_grid

    samples = generator.sample(requested.tolist(), evaluate.seed).numpy()
    return write_sample_grid(
        samples,
        requested,
        path,
        classes=len(generator.classes),
        per_class=evaluate.grid_per_class,
        scale=evaluate.grid_scale,
        gap=evaluate.grid_gap,
    )
