"""The text modality's evaluation, as the shared evaluate stage (aigc.stages.evaluate) runs it.

    found = assess(paths, params, model_uri, dataset, bundle_dir, scratch, on_progress)

Bits per character against the unigram baseline, continuation scores, diversity and label
control on the test split, spread over Ray shards (`aigc.ray.evaluate_on_ray`: sampling
hundreds of documents is the slow part of a run); the label-control yardstick is a topic
classifier fitted once per data version.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from aigc.config import Params
from aigc.paths import ProjectPaths
from aigc.stages.evaluate import Assessment
from aigc.text.dataset import unigram_bits_per_char
from aigc.text.evaluate.topic_classifier import TopicClassifier, fit_topic_classifier
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
    """The text generator at `model_uri` (or its local copy `bundle_dir`) on `dataset`'s test
    split; `on_progress` hears a sentence as each part starts or each Ray shard finishes."""
    from aigc.ray import EVALUATION_NODES_TAG, connect, evaluate_on_ray

    say = on_progress or (lambda sentence: None)
    settings = TrackingSettings.of(params.tracking, paths.root)
    train, test = dataset.split("train"), dataset.split("test")
    baseline = unigram_bits_per_char(train["text"].tolist(), test["text"].tolist())
    classifier = topic_classifier(dataset.version, train, params)
    connect(params.train.ray, paths.work)
    with tempfile.TemporaryDirectory() as directory:
        if bundle_dir is None:
            from aigc.tracking import load_generator

            say(f"loading {model_uri}")
            bundle_dir = load_generator(model_uri, settings).save(Path(directory) / "bundle")
        say(
            f"evaluating {model_uri} on {len(test)} test documents of data version "
            f"{dataset.version[:12]} in up to {params.evaluate.shards} Ray shards: bits per "
            f"character (unigram baseline {baseline:.3f}), continuations of "
            f"{params.evaluate.continuation_documents} documents, label control with "
            f"{params.evaluate.samples_per_label} samples per label"
        )
        report, nodes = evaluate_on_ray(
            bundle_dir,
            test,
            params.label,
            params.evaluate,
            params.evaluate.shards,
            baseline,
            classifier,
            on_progress=on_progress,
        )
    if classifier is not None:
        report.metrics["topic_classifier_train_documents"] = float(classifier.train_documents)
    (scratch / "evaluation.json").write_text(report.to_json())
    report.per_document.to_csv(scratch / "per_document.csv", index=False)
    (scratch / "samples_per_label.txt").write_text(format_samples(report.samples))
    return Assessment(
        metrics=dict(report.metrics),
        per_document=report.per_document,
        artifacts={
            "evaluation": (scratch / "evaluation.json", scratch / "per_document.csv"),
            "samples": (scratch / "samples_per_label.txt",),
        },
        samples=report.samples,
        tags={EVALUATION_NODES_TAG: ",".join(nodes)},
    )


_CLASSIFIERS: dict[tuple[str, str], TopicClassifier] = {}


def topic_classifier(version: str, train: pd.DataFrame, params: Params) -> TopicClassifier | None:
    """The label-control yardstick of this data version: fitted once per version and labels
    (kept for the process: a run evaluates its challenger and its champion with the same)."""
    labels = sorted(params.label.topics)
    key = (version, ",".join(labels))
    if key not in _CLASSIFIERS:
        if (
            params.evaluate.samples_per_label == 0
            or train["label"][train["label"].isin(labels)].nunique() < 2
        ):
            return None  # nothing to grade, or nothing to tell apart
        _CLASSIFIERS[key] = fit_topic_classifier(train, labels)
    return _CLASSIFIERS[key]


def format_samples(samples: dict[str, list[str]]) -> str:
    blocks = []
    for label, texts in sorted(samples.items()):
        body = "\n\n".join(f"[{index}] {text.strip()}" for index, text in enumerate(texts))
        blocks.append(f"=== {label} ===\n{body}")
    return "\n\n".join(blocks) + "\n"
