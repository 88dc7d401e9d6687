"""The label-control yardstick: a topic classifier trained on the train split of a data version.

    classifier = fit_topic_classifier(train_frame, labels)   # TF-IDF + logistic regression
    classifier.predict(["The socket accepts a connection..."])   # -> array of labels

Keyword labeling functions abstain on most short samples, so they cannot tell a model that
follows its label from one that does not. A classifier fitted on the real documents of the
labels being requested always answers, and its accuracy on real test documents cut to the
samples' length is the ceiling a perfect generator would reach (`ceiling_correct`).
Deterministic: the same frame gives the same classifier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TopicClassifier:
    pipeline: object  # sklearn Pipeline: TfidfVectorizer -> LogisticRegression
    labels: tuple[str, ...]
    train_documents: int

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.array([], dtype=object)
        return self.pipeline.predict(list(texts))


def fit_topic_classifier(train: pd.DataFrame, labels: Sequence[str]) -> TopicClassifier:
    """Fit on the train documents whose label is one of `labels` (columns text, label)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    chosen = train[train["label"].isin(labels)]
    present = sorted(set(chosen["label"]))
    if len(present) < 2:
        raise ValueError(
            f"the topic classifier needs train documents of at least two labels; found {present}"
        )
    pipeline = make_pipeline(
        TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=2, max_features=50_000),
        LogisticRegression(max_iter=2000, C=10.0),
    )
    pipeline.fit(chosen["text"].astype(str).tolist(), chosen["label"].astype(str).tolist())
    return TopicClassifier(pipeline, tuple(present), len(chosen))


def ceiling_correct(
    classifier: TopicClassifier, documents: pd.DataFrame, cut: Callable[[str], str]
) -> pd.Series:
    """Per document (index of `documents`): is its label recovered from `cut(text)`? NaN for
    documents whose label the classifier does not know (the fallback label)."""
    known = documents["label"].isin(classifier.labels)
    result = pd.Series(np.nan, index=documents.index, dtype=float)
    if known.any():
        texts = [cut(text) for text in documents.loc[known, "text"].astype(str)]
        predicted = classifier.predict(texts)
        result[known] = (predicted == documents.loc[known, "label"].to_numpy()).astype(float)
    return result
