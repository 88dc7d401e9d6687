"""The whole evaluation of a generator on a test split, in one process or spread over shards.

One process:

    report = evaluate_generator(generator, test_frame, params.label, params.evaluate,
                                train_texts=train_frame["text"])
    report.metrics["test_bits_per_character"]; report.per_document; report.to_json()

Spread over workers (Ray or anything else): the driver picks the continuation documents and
the labels, each worker evaluates its share, the driver merges and summarizes:

    picked = continuation_ids(test_frame, params.evaluate.continuation_documents)
    labels = control_labels(generator, params.label)
    shards = [evaluate_shard(generator, part, params.label, params.evaluate,
                             continuation_ids=picked, labels=labels[i::n])
              for i, part in enumerate(parts)]            # on n workers
    report = summarize(merge_shards(shards), unigram_bits_per_character=baseline)

Every metric is computed from per-document (or per-sample) rows, and every sampled text has
its own seed (`derived_seed`), so the merged result equals the single-process one; the only
difference is float rounding in the likelihoods, whose batches are made up differently.

`test_frame` needs `id`, `text` and `label`. A part switched off by settings
(`continuation_documents=0`, `samples_per_label=0`) leaves its metrics out of the report.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from aigc.config import EvaluateParams, LabelParams
from aigc.text.dataset import unigram_bits_per_char
from aigc.text.evaluate.continuation import (
    CONTINUATION_COLUMNS,
    score_continuations,
    summarize_continuations,
)
from aigc.text.evaluate.diversity import distinct_n
from aigc.text.evaluate.label_control import (
    CLASSIFIED_COLUMNS,
    CONDITIONED,
    control_labels,
    label_control_rows,
    summarize_label_control,
)
from aigc.text.evaluate.language_model import document_nll, summarize_lm
from aigc.text.evaluate.topic_classifier import TopicClassifier, ceiling_correct

if TYPE_CHECKING:
    from aigc.text.generator import TextGenerator

DOCUMENT_COLUMNS = ["id", "label", "nll_nats", "tokens", "chars"]
SCORE_COLUMNS = ["bleu", "chrf", "rougeL"]
# Per shard only, with label control on: each test document cut to a sample's length, for
# the real text's own distinct-n (`real_distinct_*`). Not kept in the report's rows.
REAL_SAMPLE = "real_sample"


# The figures shown and tagged wherever a model is summarized (CLI, registry tags).
HEADLINE_METRICS = (
    "test_bits_per_character",
    "unigram_bits_per_character",
    "test_perplexity",
    "bleu",
    "chrf",
    "rougeL",
    "distinct_1",
    "distinct_2",
    "real_distinct_2",
    "label_control_accuracy",
    "label_control_unconditioned_accuracy",
    "label_control_ceiling",
)


@dataclass(frozen=True)
class EvaluationShard:
    """The rows one worker produced: per test document, per continued document, per sample."""

    documents: pd.DataFrame  # DOCUMENT_COLUMNS
    continuations: pd.DataFrame  # continuation.CONTINUATION_COLUMNS
    label_control: pd.DataFrame  # label_control.CLASSIFIED_COLUMNS


@dataclass(frozen=True)
class EvaluationReport:
    """Flat metrics to log, the rows a promotion gate bootstraps over, and samples to read.

    per_document: id, label, nll_nats, tokens, chars, bleu, chrf, rougeL (the last three NaN
    for documents that were not continued). samples: label -> conditioned samples, in order.
    """

    metrics: dict[str, float]
    per_document: pd.DataFrame
    samples: dict[str, list[str]] = field(default_factory=dict)
    per_label_accuracy: dict[str, float] = field(default_factory=dict)
    label_control: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=CLASSIFIED_COLUMNS)
    )

    def to_json(self) -> str:
        """Everything as one JSON document, byte-identical for identical reports (sorted keys;
        NaN and infinities become null)."""
        document = {
            "metrics": self.metrics,
            "per_label_accuracy": self.per_label_accuracy,
            "samples": self.samples,
            "per_document": self.per_document.to_dict(orient="records"),
            "label_control": self.label_control.to_dict(orient="records"),
        }
        return json.dumps(_json_ready(document), sort_keys=True, indent=2, allow_nan=False)


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_test_frame(test_frame: pd.DataFrame) -> pd.DataFrame:
    """`test_frame` if it has id, text and label and unique ids; else a ValueError saying so."""
    missing = [column for column in ("id", "text", "label") if column not in test_frame.columns]
    if missing:
        raise ValueError(
            f"test frame lacks the column(s) {missing} (has {list(test_frame.columns)}); pass "
            "the labeled frame's test split"
        )
    repeated = test_frame["id"][test_frame["id"].duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"test frame repeats ids {repeated[:5]}; ids must be unique")
    return test_frame


def continuation_ids(test_frame: pd.DataFrame, count: int) -> list[str]:
    """The `count` documents to continue: the smallest ids. Ids are content hashes, so this is
    a fixed pseudo-random sample that depends neither on row order nor on sharding."""
    return sorted(check_test_frame(test_frame)["id"].astype(str))[: max(count, 0)]


def evaluate_shard(
    generator: TextGenerator,
    documents: pd.DataFrame,
    label_params: LabelParams,
    settings: EvaluateParams,
    *,
    continuation_ids: Collection[str] = (),
    labels: Sequence[str] = (),
    classifier: TopicClassifier | None = None,
) -> EvaluationShard:
    """Score `documents` (id, text, label), continue those among them in `continuation_ids`,
    and run label control for `labels` (this worker's share of `control_labels`), graded by
    `classifier` when given (with its ceiling on the documents cut to a sample's length)."""
    documents = check_test_frame(documents)
    ids = documents["id"].astype(str).tolist()
    texts = documents["text"].astype(str).tolist()
    labels_of_documents = documents["label"].astype(str).tolist()

    likelihood = document_nll(generator, texts, labels_of_documents, settings.batch_size)
    likelihood.insert(0, "label", labels_of_documents)
    likelihood.insert(0, "id", ids)
    tokenizer = generator.tokenizer

    def cut(text: str) -> str:  # a real document as long as a sample
        return tokenizer.decode(tokenizer.encode(text)[: settings.sample_tokens])

    extra: list[str] = []
    if classifier is not None:
        likelihood["topic_ceiling"] = ceiling_correct(classifier, documents, cut).to_numpy()
        extra.append("topic_ceiling")
    if settings.samples_per_label > 0:
        likelihood[REAL_SAMPLE] = [cut(text) for text in texts]
        extra.append(REAL_SAMPLE)

    wanted = set(continuation_ids)
    chosen = [row for row, identifier in enumerate(ids) if identifier in wanted]
    continuations = score_continuations(
        generator,
        [ids[row] for row in chosen],
        [texts[row] for row in chosen],
        [labels_of_documents[row] for row in chosen],
        settings,
    )

    if labels and settings.samples_per_label > 0:
        control = label_control_rows(
            generator, label_params, labels, settings, classifier=classifier
        )
    else:
        control = pd.DataFrame(columns=CLASSIFIED_COLUMNS)
    return EvaluationShard(likelihood[[*DOCUMENT_COLUMNS, *extra]], continuations, control)


def merge_shards(shards: Iterable[EvaluationShard]) -> EvaluationShard:
    """One shard holding every shard's rows, in a canonical order (by id; samples by mode,
    label and index), so the merge does not depend on which worker finished first."""
    shards = list(shards)
    if not shards:
        raise ValueError("no shards to merge; evaluate at least one shard")

    def combined(frames: list[pd.DataFrame], columns: list[str], order: list[str]) -> pd.DataFrame:
        frames = [frame for frame in frames if not frame.empty]
        if not frames:
            return pd.DataFrame(columns=columns)
        frame = pd.concat(frames, ignore_index=True)[columns]
        return frame.sort_values(order, kind="stable").reset_index(drop=True)

    extra = [
        column
        for column in ("topic_ceiling", REAL_SAMPLE)
        if any(column in s.documents for s in shards)
    ]
    columns = [*DOCUMENT_COLUMNS, *extra]
    documents = combined([s.documents for s in shards], columns, ["id"])
    repeated = documents["id"][documents["id"].duplicated()].unique().tolist()
    if repeated:
        raise ValueError(f"documents {repeated[:5]} were scored in more than one shard")
    return EvaluationShard(
        documents=documents,
        continuations=combined([s.continuations for s in shards], CONTINUATION_COLUMNS, ["id"]),
        label_control=combined(
            [s.label_control for s in shards],
            CLASSIFIED_COLUMNS,
            ["mode", "requested_label", "sample"],
        ),
    )


def summarize(
    shard: EvaluationShard, *, unigram_bits_per_character: float | None = None
) -> EvaluationReport:
    """The report of a merged shard; `unigram_bits_per_character` is the baseline to log
    beside the model's (see `aigc.text.dataset.unigram_bits_per_char`)."""
    metrics: dict[str, float] = {}
    lm = summarize_lm(shard.documents)
    metrics["test_bits_per_character"] = lm["bits_per_character"]
    metrics["test_perplexity"] = lm["perplexity"]
    metrics["test_tokens"] = lm["tokens"]
    metrics["test_chars"] = lm["chars"]
    metrics["test_documents"] = lm["documents"]
    if unigram_bits_per_character is not None:
        metrics["unigram_bits_per_character"] = float(unigram_bits_per_character)
    if "topic_ceiling" in shard.documents and shard.documents["topic_ceiling"].notna().any():
        # The classifier on real test documents cut to a sample's length: what a generator
        # that always writes on topic would score.
        metrics["label_control_ceiling"] = float(shard.documents["topic_ceiling"].mean())

    if not shard.continuations.empty:
        continuation = summarize_continuations(shard.continuations)
        metrics.update({name: continuation[name] for name in SCORE_COLUMNS})
        metrics["sentence_bleu"] = continuation["sentence_bleu"]
        metrics["sentence_chrf"] = continuation["sentence_chrf"]
        metrics["continuation_documents"] = continuation["documents"]

    samples: dict[str, list[str]] = {}
    per_label: dict[str, float] = {}
    control = shard.label_control
    if not control.empty:
        summary = summarize_label_control(control)
        metrics["label_control_accuracy"] = summary["conditioned_accuracy"]
        metrics["label_control_unconditioned_accuracy"] = summary["unconditioned_accuracy"]
        metrics["label_control_lf_accuracy"] = summary["lf_conditioned_accuracy"]
        metrics["label_control_lf_unconditioned_accuracy"] = summary["lf_unconditioned_accuracy"]
        metrics["label_control_coverage"] = summary["coverage"]
        metrics["label_control_unconditioned_coverage"] = summary["unconditioned_coverage"]
        metrics["label_control_samples"] = summary["samples"]
        per_label = summary["per_label"]
        # Diversity of free writing: all label-control samples, conditioned or not.
        metrics["distinct_1"] = distinct_n(control["text"], 1)
        metrics["distinct_2"] = distinct_n(control["text"], 2)
        if REAL_SAMPLE in shard.documents:
            metrics |= real_distinct(shard.documents, len(control))
        conditioned = control[control["mode"] == CONDITIONED]
        for label, group in conditioned.groupby("requested_label", sort=True):
            samples[str(label)] = group.sort_values("sample")["text"].astype(str).tolist()

    scores = shard.continuations[["id", *SCORE_COLUMNS]]
    scores = scores.astype(dict.fromkeys(SCORE_COLUMNS, float))
    documents = shard.documents.drop(columns=[REAL_SAMPLE], errors="ignore")
    per_document = documents.merge(scores, on="id", how="left", validate="one_to_one")
    return EvaluationReport(
        metrics=metrics,
        per_document=per_document,
        samples=samples,
        per_label_accuracy=per_label,
        label_control=control.reset_index(drop=True),
    )


def real_distinct(documents: pd.DataFrame, samples: int) -> dict[str, float]:
    """`real_distinct_1` and `real_distinct_2`: distinct-n of real test text as it would be
    sampled, the value a generator's `distinct_*` is judged against (more is not better:
    random words score high). distinct-n grows as less text is pooled, so it pools as many
    documents as there were samples (the smallest ids, or all when there are fewer), each cut
    to a sample's length (column REAL_SAMPLE)."""
    texts = documents.sort_values("id")[REAL_SAMPLE].astype(str).head(samples)
    return {f"real_distinct_{n}": distinct_n(texts, n) for n in (1, 2)}


def evaluate_generator(
    generator: TextGenerator,
    test_frame: pd.DataFrame,
    label_params: LabelParams,
    settings: EvaluateParams,
    train_texts: Sequence[str] | None = None,
    classifier: TopicClassifier | None = None,
) -> EvaluationReport:
    """Every part of the evaluation in this process: likelihood of all test documents,
    continuation of `settings.continuation_documents` of them, label control over
    `control_labels`, diversity of the samples; with `train_texts`, the unigram baseline."""
    test_frame = check_test_frame(test_frame)
    labels = control_labels(generator, label_params) if settings.samples_per_label else []
    shard = evaluate_shard(
        generator,
        test_frame,
        label_params,
        settings,
        continuation_ids=continuation_ids(test_frame, settings.continuation_documents),
        labels=labels,
        classifier=classifier,
    )
    baseline = None
    if train_texts is not None:
        baseline = unigram_bits_per_char(list(train_texts), test_frame["text"].tolist())
    return summarize(merge_shards([shard]), unigram_bits_per_character=baseline)
