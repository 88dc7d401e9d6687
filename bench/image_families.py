"""Image quality at the default budget: each family against the floor and the ceiling.

    .venv/bin/python bench/image_families.py [--families dcgan,vae,ddpm]

The default image data (scikit-learn's digits through the real collect, clean and label
code, so the same splits as `aigc run`), each family's default config and default loop
(`image.train`: steps and time budget as `aigc run` uses them), trained in one process with
one thread (the quality of a Ray run of the same steps is the same; its speed is
bench/image_throughput.py's). Every row is measured by the default evaluation
(`image.evaluate`: the feature classifier fitted once, the same sample counts and seed), so
the rows, the floor (real train images) and the ceiling (class mean plus noise) compare.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from aigc.config import ImageTrainParams, Params
from aigc.data.overrides import read_overrides
from aigc.image.clean import clean_images
from aigc.image.collect import collect_images
from aigc.image.dataset import read_labeled
from aigc.image.evaluate.classifier import fit_feature_classifier
from aigc.image.evaluate.report import evaluate_image_generator
from aigc.image.generator import ImageGenerator
from aigc.image.label import label_images
from aigc.image.training import prepare_image_job
from aigc.settings import apply_offline_defaults
from aigc.stages.label import write_splits
from aigc.train.job import train_single_process

COLUMNS = (
    ("frechet_distance", "FD"),
    ("kid", "KID"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("conditional_accuracy", "cond. acc."),
    ("feature_spread_ratio", "spread"),
)


def default_splits(params: Params, root: Path) -> dict:
    """The labeled digits as `aigc run` makes them (collect, clean, label; no DVC)."""
    image = params.image
    collection = collect_images(image.collect.sources, root)
    cleaned = clean_images(collection.frame, image.clean)
    overrides = read_overrides(root / image.label.overrides_file)
    labeled = label_images(cleaned.records, image.label, overrides)
    with tempfile.TemporaryDirectory() as directory:
        write_splits(labeled.frame, Path(directory))
        return read_labeled(directory)


def main() -> None:
    apply_offline_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", default="dcgan,vae,ddpm")
    args = parser.parse_args()
    torch.set_num_threads(1)

    params = Params()
    splits = default_splits(params, Path.cwd())
    train, validation, test = splits["train"], splits["validation"], splits["test"]
    settings = params.image.evaluate
    started = time.perf_counter()
    classifier = fit_feature_classifier(train, settings.classifier, test=test, data_version="")
    fit_seconds = time.perf_counter() - started

    rows, references = [], {}
    for family in args.families.split(","):
        train_params = ImageTrainParams.model_validate({"model": {"family": family}})
        job = prepare_image_job(train, validation, train_params)
        started = time.perf_counter()
        model, result = train_single_process(job)
        seconds = time.perf_counter() - started
        generator = ImageGenerator(model.eval(), classes=list(train.classes))
        evaluation = evaluate_image_generator(
            lambda requested, seed, generator=generator: generator.sample(
                requested.tolist(), seed
            ).numpy(),
            classifier,
            train,
            test,
            settings,
        )
        metrics = evaluation.metrics
        references = {
            "floor (real train images)": {key: metrics[f"floor_{key}"] for key, _ in COLUMNS},
            "ceiling (class mean + noise)": {key: metrics[f"trivial_{key}"] for key, _ in COLUMNS},
        }
        rows.append(
            {
                "row": f"{family} ({result.stop_reason})",
                "steps": result.steps,
                "train s": seconds,
                **{key: metrics[key] for key, _ in COLUMNS},
            }
        )
    for name, values in references.items():
        rows.append({"row": name, "steps": None, "train s": None, **values})

    table = pd.DataFrame(rows).set_index("row")
    table["steps"] = [f"{steps:.0f}" if steps == steps else "-" for steps in table["steps"]]
    table = table.rename(columns=dict(COLUMNS))
    table.index.name = None
    print(
        f"image families on the default digits ({len(train)} train, {len(test)} test images),"
        f" one process, one thread;\nfeature classifier test accuracy "
        f"{classifier.test_accuracy:.3f} (fit {fit_seconds:.1f} s); "
        f"{settings.samples_per_class} samples per class"
    )
    print(table.to_string(float_format=lambda value: f"{value:.3f}", na_rep="-"))
    ceiling = references["ceiling (class mean + noise)"]["frechet_distance"]
    print(
        "FD / ceiling FD: "
        + ", ".join(
            f"{row['row'].split()[0]} {row['frechet_distance'] / ceiling:.2f}"
            for row in rows[: -len(references)]
        )
    )


if __name__ == "__main__":
    main()
