"""The label-control yardstick on real text: CPython's own docstrings, labeled by module.

The classifier must tell the topics apart on real documents (well above chance), and label
control graded by it must separate a generator that follows its label from one that ignores
it: the one that ignores it scores near the unconditioned figure (chance), the one that
follows it near the ceiling.
"""

from __future__ import annotations

import ast
import random

import pandas as pd
import pytest

from aigc.config import EvaluateParams, LabelParams
from aigc.text.evaluate.label_control import label_control_rows, summarize_label_control
from aigc.text.evaluate.topic_classifier import ceiling_correct, fit_topic_classifier
from aigc.text.sources.builtin import _docstrings, stdlib_root

PACKAGES = {"asyncio": "concurrency", "email": "email_mime", "tkinter": "gui_graphics"}
PACKAGES |= {"xml": "data_formats", "importlib": "packaging_imports", "http": "networking"}


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    rows = []
    for package, label in PACKAGES.items():
        for path in sorted((stdlib_root() / package).rglob("*.py")):
            tree = ast.parse(path.read_bytes())
            for _, _, _, text in _docstrings(tree):
                if len(text) >= 80:
                    rows.append({"text": text, "label": label})
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)
    frame["split"] = ["test" if index % 5 == 0 else "train" for index in range(len(frame))]
    return frame


@pytest.fixture(scope="module")
def classifier(corpus):
    return fit_topic_classifier(corpus[corpus["split"] == "train"], sorted(PACKAGES.values()))


def test_the_classifier_separates_real_topics_well_above_chance(corpus, classifier):
    test = corpus[corpus["split"] == "test"]
    accuracy = (classifier.predict(test["text"].tolist()) == test["label"].to_numpy()).mean()
    chance = 1 / len(PACKAGES)
    assert accuracy > 0.7 > 3 * chance, accuracy
    short = ceiling_correct(classifier, test, lambda text: text[:200]).mean()
    assert short > 2 * chance, "cut to a sample's length, real text is still recognised"


class RealTextGenerator:
    """Writes a real test document: of the requested label, or of any label when it ignores
    the request (or none was made)."""

    def __init__(self, documents: pd.DataFrame, follows_label: bool) -> None:
        self.documents = documents
        self.follows_label = follows_label
        self.labels = tuple(sorted(PACKAGES.values()))

    def generate(self, prompts, labels, max_new_tokens=64, temperature=0.8, top_k=50, **seeds):
        rng = random.Random(0)
        texts = []
        for label in labels:
            pool = self.documents
            if self.follows_label and label is not None:
                pool = pool[pool["label"] == label]
            texts.append(pool["text"].iloc[rng.randrange(len(pool))][:300])
        return texts


@pytest.mark.parametrize("follows_label", [True, False])
def test_label_control_tells_following_the_label_from_ignoring_it(
    corpus, classifier, follows_label
):
    test = corpus[corpus["split"] == "test"]
    labels = sorted(PACKAGES.values())
    topics = {label: {"keywords": [label]} for label in labels}
    rows = label_control_rows(
        RealTextGenerator(test, follows_label),
        LabelParams(topics=topics),
        labels,
        EvaluateParams(samples_per_label=20),
        classifier=classifier,
    )
    summary = summarize_label_control(rows)
    assert summary["yardstick"] == "classifier"
    chance = 1 / len(labels)
    assert summary["unconditioned_accuracy"] < 2 * chance
    if follows_label:
        assert summary["conditioned_accuracy"] > 0.7
    else:
        gap = abs(summary["conditioned_accuracy"] - summary["unconditioned_accuracy"])
        assert summary["conditioned_accuracy"] < 2 * chance and gap < 0.15, summary
