"""The `label` stage core: labeling functions vote on each record's topic, a label model decides.

Weak supervision in the style of Snorkel. Nothing here reads or writes files; the label
stage (aigc.stages.label) loads the clean frame and the overrides, calls `label_documents`
(`label_records`, then the split of aigc.data.split), and saves.

    result = label_records(clean, params.label, read_overrides(params.label.overrides_file))
    result.frame    # clean columns + label, label_confidence, labeling_functions
    result.report   # coverage, overlaps, conflicts, accuracies, distribution (JSON-ready)

The labeling functions (keyword, regex and module rules from `params.label.topics`, and
Python ones registered in aigc/text/labeling_functions.py) live in `aigc.text.topic_rules`,
whose docstring says how each votes and how to add one.

The label model ("weighted" by default, or "majority") turns the votes into one label per
record; see `estimate_accuracies` and `combine_votes`. A record no LF votes for gets
`fallback_label` with confidence 0.0 and no labeling functions. `labeling_functions` names the
LFs that voted for the chosen label (the dissenters show up in the report's conflicts).
Manual overrides (a CSV of id,label) win over everything: confidence 1.0, labeling_functions
"override".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from aigc.config import LabelParams, Params
from aigc.data.overrides import check_override_rows
from aigc.data.records import CLEAN_SCHEMA, LABELED_SCHEMA, check
from aigc.data.split import assign_splits, split_report
from aigc.text.topic_rules import (
    ABSTAIN,
    REGISTRY,
    LabelingFunction,
    LabelingFunctionRegistry,
    build_labeling_functions,
    keyword_pattern,
    labeling_frame,
    labeling_function,
    match_counts,
    vote_matrix,
)

__all__ = [  # the labeling-function names are re-exported: they were defined here first
    "ABSTAIN",
    "OVERRIDE",
    "REGISTRY",
    "LabelResult",
    "LabelingFunction",
    "LabelingFunctionRegistry",
    "accuracy_weights",
    "build_labeling_functions",
    "combine_votes",
    "estimate_accuracies",
    "keyword_pattern",
    "label_records",
    "labeling_frame",
    "labeling_function",
    "match_counts",
    "topic_scores",
    "vote_matrix",
]

OVERRIDE = "override"
# Before any evidence every LF is assumed right 70% of the time; the prior counts as this many
# records of evidence, so an LF that rarely overlaps with others keeps close to it.
PRIOR_ACCURACY = 0.7
PRIOR_STRENGTH = 5.0
_TIE = 1e-9


@dataclass(frozen=True)
class LabelResult:
    frame: pd.DataFrame
    report: dict


# --- the label model ------------------------------------------------------------------------


def accuracy_weights(accuracies: np.ndarray, n_topics: int) -> np.ndarray:
    """Vote weights: log-odds of being right against being one particular wrong topic.

    With errors spread evenly over the other topics, a vote from an LF of accuracy a multiplies
    the odds of its topic by a·(K-1)/(1-a). An LF no better than chance gets weight 0."""
    log_odds = np.log(accuracies / (1 - accuracies)) + np.log(max(n_topics - 1, 1))
    return np.maximum(log_odds, 0.0)


def topic_scores(votes: np.ndarray, weights: np.ndarray, n_topics: int) -> np.ndarray:
    """Records × topics: the summed weight of the votes for each topic."""
    scores = np.zeros((votes.shape[0], n_topics))
    for column in range(votes.shape[1]):
        rows = np.flatnonzero(votes[:, column] != ABSTAIN)
        scores[rows, votes[rows, column]] += weights[column]
    return scores


def estimate_accuracies(votes: np.ndarray, n_topics: int, iterations: int) -> np.ndarray:
    """Each LF's accuracy, estimated as its agreement with the consensus of the other LFs.

    A Dawid–Skene-lite: start every LF at PRIOR_ACCURACY; then, `iterations` times, weight
    the votes by the current accuracies and count, for each LF, on the records where some
    other LF voted, how often the others' weighted winner is its own vote (ties share the
    credit). Leaving the LF out of its own consensus keeps it from grading itself; the prior
    (PRIOR_STRENGTH records' worth) smooths LFs with little overlap."""
    accuracies = np.full(votes.shape[1], PRIOR_ACCURACY)
    for _ in range(iterations):
        weights = accuracy_weights(accuracies, n_topics)
        scores = topic_scores(votes, weights, n_topics)
        agreement = np.zeros(votes.shape[1])
        evidence = np.zeros(votes.shape[1])
        for column in range(votes.shape[1]):
            rows = np.flatnonzero(votes[:, column] != ABSTAIN)
            own = votes[rows, column].astype(np.intp)
            others = scores[rows]
            others[np.arange(len(rows)), own] -= weights[column]
            best = others.max(axis=1)
            informed = best > _TIE
            tied = others[informed] >= best[informed, None] - _TIE
            share = tied[np.arange(int(informed.sum())), own[informed]] / tied.sum(axis=1)
            agreement[column] = share.sum()
            evidence[column] = informed.sum()
        accuracies = (agreement + PRIOR_STRENGTH * PRIOR_ACCURACY) / (evidence + PRIOR_STRENGTH)
    return np.clip(accuracies, 1e-3, 1 - 1e-3)


def combine_votes(
    votes: np.ndarray, weights: np.ndarray, n_topics: int, model: str
) -> tuple[np.ndarray, np.ndarray]:
    """(topic code or ABSTAIN, confidence) per record.

    The winner is the topic with the largest summed weight, ties going to the earlier topic.
    Confidence: for "majority", the winner's share of the votes; for "weighted", its posterior
    probability under the same model as `accuracy_weights` (one vote from an LF of accuracy a
    gives confidence a). Records without a (positively weighted) vote get ABSTAIN and 0."""
    scores = topic_scores(votes, weights, n_topics).round(9)  # exact ties break by topic order
    best = scores.max(axis=1, initial=0.0)
    covered = best > 0
    codes = np.where(covered, scores.argmax(axis=1) if n_topics else ABSTAIN, ABSTAIN)
    if model == "majority":
        total = scores.sum(axis=1)
        confidence = np.divide(best, total, out=np.zeros_like(best), where=covered)
    else:
        normaliser = np.exp(scores - best[:, None]).sum(axis=1)
        confidence = np.where(covered, 1.0 / np.maximum(normaliser, 1.0), 0.0)
    return codes, confidence


def _checked_overrides(overrides: pd.DataFrame, allowed: Sequence[str]) -> pd.Series:
    """label by id, after checking every row names a known label."""
    missing = [column for column in ("id", "label") if column not in overrides.columns]
    if missing:
        raise ValueError(f"overrides lack the column(s) {missing}; pass a frame of id,label")
    table = (
        overrides[["id", "label"]].fillna("").astype(str).apply(lambda column: column.str.strip())
    )
    check_override_rows(table, "overrides")
    unknown = ~table["label"].isin(list(allowed))
    if unknown.any():
        position = int(np.flatnonzero(unknown.to_numpy())[0])
        raise ValueError(
            f"overrides row {position + 1} (id {table['id'].iloc[position]!r}): label "
            f"{table['label'].iloc[position]!r} is neither a topic in label.topics nor the "
            f"fallback; use one of {list(allowed)} or add the topic to params"
        )
    return table.drop_duplicates("id").set_index("id")["label"]


# --- the stage ------------------------------------------------------------------------------


def label_records(
    clean: pd.DataFrame,
    params: LabelParams,
    overrides: pd.DataFrame,
    *,
    registry: LabelingFunctionRegistry = REGISTRY,
) -> LabelResult:
    """Label every clean record with a topic, a confidence and the LFs behind it."""
    clean = check(clean, CLEAN_SCHEMA, "label")
    topics = list(params.topics)
    functions, skipped = build_labeling_functions(params, registry)
    override_labels = _checked_overrides(overrides, [*topics, params.fallback_label])

    votes = vote_matrix(labeling_frame(clean), functions, topics).to_numpy()
    accuracies = estimate_accuracies(votes, len(topics), params.label_model_iterations)
    if params.label_model == "weighted":
        weights = accuracy_weights(accuracies, len(topics))
    else:
        weights = np.ones(len(functions))
    codes, confidence = combine_votes(votes, weights, len(topics), params.label_model)

    names = np.array([*topics, params.fallback_label], dtype=object)
    labels = pd.Series(names[np.where(codes == ABSTAIN, len(topics), codes)], index=clean.index)
    supporters = _supporter_names(votes, codes, [function.name for function in functions])

    manual = clean["id"].map(override_labels)
    overridden = manual.notna().to_numpy()
    frame = clean.copy()
    frame["label"] = labels.where(~overridden, manual).astype(str)
    frame["label_confidence"] = np.where(overridden, 1.0, confidence.round(4)).astype(float)
    frame["labeling_functions"] = np.where(overridden, OVERRIDE, supporters)
    frame["labeling_functions"] = frame["labeling_functions"].astype(str)

    unknown_ids = sorted(set(override_labels.index) - set(clean["id"]))
    report = _report(votes, functions, accuracies, frame, params, skipped)
    report["overrides"] = {
        "applied": int(overridden.sum()),
        "unknown": len(unknown_ids),
        "unknown_ids": unknown_ids[:20],
    }
    return LabelResult(frame=frame, report=report)


def _supporter_names(votes: np.ndarray, codes: np.ndarray, names: list[str]) -> np.ndarray:
    """Per record, the comma-joined names of the LFs that voted for its label."""
    supports = (votes == codes[:, None]) & (codes[:, None] != ABSTAIN)
    if not names:
        return np.full(len(codes), "", dtype=object)
    patterns, which = np.unique(supports, axis=0, return_inverse=True)
    joined = np.array(
        [",".join(name for name, on in zip(names, row, strict=True) if on) for row in patterns],
        dtype=object,
    )
    return joined[which.reshape(-1)]


def _share(count: int | np.integer, total: int) -> float:
    return round(float(count) / total, 4) if total else 0.0


def _report(
    votes: np.ndarray,
    functions: Sequence[LabelingFunction],
    accuracies: np.ndarray,
    frame: pd.DataFrame,
    params: LabelParams,
    skipped: list[str],
) -> dict:
    records = len(votes)
    fired = votes != ABSTAIN
    voters = fired.sum(axis=1)
    # Votes per record per topic, to tell agreeing from disagreeing neighbours.
    per_topic = np.zeros((records, len(params.topics)), dtype=np.int64)
    for code in range(len(params.topics)):
        per_topic[:, code] = (votes == code).sum(axis=1)
    topics_voted = (per_topic > 0).sum(axis=1)
    per_function = {}
    for column, function in enumerate(functions):
        mine = fired[:, column]
        own = per_topic[mine, votes[mine, column]]
        per_function[function.name] = {
            "topic": function.topic,
            "kind": function.kind,
            "coverage": _share(mine.sum(), records),
            "overlaps": _share((voters[mine] > 1).sum(), records),
            "conflicts": _share((voters[mine] > own).sum(), records),
            "estimated_accuracy": round(float(accuracies[column]), 4),
        }
    counts = frame["label"].value_counts()
    order = [*params.topics, params.fallback_label]
    order += sorted(set(counts.index) - set(order))
    return {
        "records": records,
        "label_model": params.label_model,
        "iterations": params.label_model_iterations,
        "coverage": _share((voters > 0).sum(), records),
        "overlap": _share((voters > 1).sum(), records),
        "conflict": _share((topics_voted > 1).sum(), records),
        "mean_confidence": round(float(frame["label_confidence"].mean()), 4) if records else 0.0,
        "label_distribution": {
            label: {
                "count": int(counts.get(label, 0)),
                "share": _share(counts.get(label, 0), records),
            }
            for label in order
        },
        "labeling_functions": per_function,
        "skipped_functions": skipped,
    }


def label_documents(clean: pd.DataFrame, params: Params, overrides: pd.DataFrame) -> LabelResult:
    """The text modality's label stage core: `label_records` with `params.label`, then the
    hash split of `params.split`; the report holds the split's counts too."""
    import aigc.text.labeling_functions  # noqa: F401  (registers the Python labeling functions)

    result = label_records(clean, params.label, overrides)
    frame = check(assign_splits(result.frame, params.split), LABELED_SCHEMA, "label")
    return LabelResult(frame=frame, report={**result.report, "splits": split_report(frame)})


def label_metrics(report: dict, counts: dict) -> dict:
    """The report's headline numbers: what `dvc metrics show` and `dvc exp show` list.

    Shares of records (coverage: some function voted; conflict: functions voted for different
    topics) and records per split; per-function figures stay in label.json."""
    return {
        "records": counts["records"],
        "coverage": report["coverage"],
        "overlap": report["overlap"],
        "conflict": report["conflict"],
        "mean_confidence": report["mean_confidence"],
        "splits": dict(counts["splits"]),
    }
