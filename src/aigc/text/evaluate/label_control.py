"""Label control: does asking for a topic give text about that topic?

    labels = control_labels(generator, params.label)
    rows = label_control_rows(generator, params.label, labels, params.evaluate)
    summarize_label_control(rows)
    # {"conditioned_accuracy", "unconditioned_accuracy", "coverage", "unconditioned_coverage",
    #  "per_label": {label: accuracy}, "samples"}

For every label, K samples (`samples_per_label`, of at most `sample_tokens` tokens each) are
drawn conditioned (prompt `<eos> <label>`) and K unconditioned (prompt `<eos>` alone: the model
picks the label itself, as its first sampled token, exactly as after any document in
training). Each unconditioned sample is assigned one of the labels as
its "requested" label, K per label, which is the round-robin assignment of K·L samples over L
labels; as the model never saw that request, the unconditioned accuracy is the chance-level
figure the conditioned accuracy must beat.

Two yardsticks classify each sample. The primary one, when given, is a topic classifier
fitted on the train split (`aigc.text.evaluate.topic_classifier`): it always answers, so its
accuracy measures control. The secondary one is the data half's labeling functions
(`aigc.text.label`) by majority vote (not the weighted model, which would make one sample's
label depend on the other samples); they abstain on most short samples. Both are fixed for a
data version, so a challenger and a champion are graded alike. Accuracy is the share of
samples whose classified label equals the requested one; coverage (labeling functions) is
the share classified as anything but the fallback label.

Each sample is drawn with its own `derived_seed(seed, mode, label, index)`, and all are drawn
in one batched call: a caller can spread the labels over workers and concatenate the rows,
and get the single-process result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import pandas as pd

from aigc.config import EvaluateParams, LabelParams
from aigc.text.evaluate.continuation import derived_seed
from aigc.text.evaluate.topic_classifier import TopicClassifier
from aigc.text.label import label_records

CONDITIONED = "conditioned"
UNCONDITIONED = "unconditioned"
SAMPLE_COLUMNS = ["id", "mode", "requested_label", "sample", "text"]
CLASSIFIED_COLUMNS = [
    *SAMPLE_COLUMNS,
    "classified_label",  # by the labeling functions
    "correct",
    "covered",
    "topic_label",  # by the topic classifier ("" without one)
    "topic_correct",
]


class Sampler(Protocol):
    """What label control needs of a generator: `aigc.text.generator.TextGenerator` is one."""

    @property
    def labels(self) -> tuple[str, ...]: ...

    def generate(
        self,
        prompts: list[str],
        labels: list[str | None],
        max_new_tokens: int = ...,
        temperature: float = ...,
        top_k: int | None = ...,
        seed: int = ...,
        seeds: list[int] | None = ...,
    ) -> list[str]: ...


def control_labels(generator: Sampler, label_params: LabelParams) -> list[str]:
    """The labels worth requesting: those the model has a token for and the labeling functions
    can recognise. The fallback label is left out: "no function fired" is what any text
    without a topic gets, so requesting it would reward writing nothing in particular."""
    labels = [label for label in generator.labels if label in label_params.topics]
    if not labels:
        raise ValueError(
            f"none of the model's labels {list(generator.labels)} is a topic in label.topics "
            f"({list(label_params.topics)}); label control needs at least one shared label"
        )
    return labels


def sample_for_labels(
    generator: Sampler,
    labels: Sequence[str],
    settings: EvaluateParams,
) -> pd.DataFrame:
    """K conditioned and K unconditioned samples per label (K: `settings.samples_per_label`):
    id, mode, requested_label, sample (index 0..K-1), text. Ids are 16 hex digits, unique even
    when two texts are identical."""
    if settings.samples_per_label < 1:
        raise ValueError(
            f"samples_per_label={settings.samples_per_label}: label control needs at least 1"
        )
    slots = [
        (mode, label, index)
        for label in labels
        for mode in (CONDITIONED, UNCONDITIONED)
        for index in range(settings.samples_per_label)
    ]
    # One call: every sample has its own seed, so all labels are sampled as one batch and a
    # sample's text does not depend on which labels share its worker.
    texts = generator.generate(
        [""] * len(slots),
        [label if mode == CONDITIONED else None for mode, label, _ in slots],
        max_new_tokens=settings.sample_tokens,
        temperature=settings.temperature,
        top_k=settings.top_k,
        seeds=[
            derived_seed(settings.seed, mode, label, str(index)) for mode, label, index in slots
        ],
    )
    rows = [
        {
            "id": sample_id(mode, label, index),
            "mode": mode,
            "requested_label": label,
            "sample": index,
            "text": text,
        }
        for (mode, label, index), text in zip(slots, texts, strict=True)
    ]
    return pd.DataFrame(rows, columns=SAMPLE_COLUMNS)


def sample_id(mode: str, label: str, index: int) -> str:
    """The id of a sample: 16 hex digits naming its (mode, label, index) slot, so it is unique
    where a content id (`text_id`) would repeat for identical samples, such as empty ones."""
    key = f"{mode}\x1f{label}\x1f{index}".encode()
    return hashlib.sha256(key).hexdigest()[:16]


def classify_samples(
    samples: pd.DataFrame, label_params: LabelParams, classifier: TopicClassifier | None = None
) -> pd.DataFrame:
    """`samples` plus classified_label, correct (= requested) and covered (not the fallback)
    by the labeling functions, and topic_label, topic_correct by `classifier`."""
    missing = [column for column in SAMPLE_COLUMNS if column not in samples.columns]
    if missing:
        raise ValueError(f"samples lack {missing}; pass the frame of sample_for_labels")
    if samples.empty:
        return samples.assign(
            classified_label="", correct=False, covered=False, topic_label="", topic_correct=False
        )[CLASSIFIED_COLUMNS]
    # A clean-shaped frame, as the label stage expects. source_type must be one of the
    # collected kinds; meta is empty, so the module labeling functions never vote.
    clean = pd.DataFrame(
        {
            "id": samples["id"].astype(str).to_numpy(),
            "text": samples["text"].astype(str).to_numpy(),
            "source": "evaluate",
            "source_type": "builtin",
            "uri": [
                f"generated://{mode}/{label}/{index}"
                for mode, label, index in zip(
                    samples["mode"], samples["requested_label"], samples["sample"], strict=True
                )
            ],
            "collected_at": "",
            "meta": "{}",
            "flags": "",
        }
    )
    majority = label_params.model_copy(update={"label_model": "majority"})
    no_overrides = pd.DataFrame({"id": pd.Series(dtype=str), "label": pd.Series(dtype=str)})
    labeled = label_records(clean, majority, no_overrides).frame
    classified = labeled["label"].to_numpy()
    result = samples[SAMPLE_COLUMNS].reset_index(drop=True)
    result["classified_label"] = classified
    result["correct"] = result["classified_label"] == result["requested_label"]
    result["covered"] = result["classified_label"] != label_params.fallback_label
    result["topic_label"] = (
        classifier.predict(result["text"].astype(str).tolist()) if classifier else ""
    )
    result["topic_correct"] = result["topic_label"] == result["requested_label"]
    return result


def label_control_rows(
    generator: Sampler,
    label_params: LabelParams,
    labels: Sequence[str],
    settings: EvaluateParams,
    classifier: TopicClassifier | None = None,
) -> pd.DataFrame:
    """Sample for `labels` (all of `control_labels`, or a worker's share), then classify."""
    samples = sample_for_labels(generator, labels, settings)
    return classify_samples(samples, label_params, classifier)


def summarize_label_control(rows: pd.DataFrame) -> dict:
    """Accuracy and coverage from classified rows (one shard's, or several concatenated)."""
    missing = [column for column in CLASSIFIED_COLUMNS if column not in rows.columns]
    if missing:
        raise ValueError(f"label-control rows lack {missing}; pass the frame of classify_samples")
    conditioned = rows[rows["mode"] == CONDITIONED]
    unconditioned = rows[rows["mode"] == UNCONDITIONED]
    if conditioned.empty or unconditioned.empty:
        raise ValueError(
            "label control needs conditioned and unconditioned samples; "
            "sample with samples_per_label >= 1 for at least one label"
        )
    by_classifier = bool((rows["topic_label"].astype(str) != "").any())
    column = "topic_correct" if by_classifier else "correct"
    per_label = conditioned.groupby("requested_label", sort=True)[column].mean()
    return {
        "yardstick": "classifier" if by_classifier else "labeling functions",
        "conditioned_accuracy": float(conditioned[column].mean()),
        "unconditioned_accuracy": float(unconditioned[column].mean()),
        "lf_conditioned_accuracy": float(conditioned["correct"].mean()),
        "lf_unconditioned_accuracy": float(unconditioned["correct"].mean()),
        "coverage": float(conditioned["covered"].mean()),
        "unconditioned_coverage": float(unconditioned["covered"].mean()),
        "per_label": {str(label): float(value) for label, value in per_label.items()},
        "samples": float(len(conditioned)),
    }
