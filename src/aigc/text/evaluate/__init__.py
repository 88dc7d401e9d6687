"""Evaluation of a trained conditional text generator on the test split of a data version.

    from aigc.text.evaluate import evaluate_generator
    report = evaluate_generator(generator, test_frame, params.label, params.evaluate,
                                train_texts=train_frame["text"])

The parts, each usable alone and each returning per-document (or per-sample) rows plus a
summarize function, so a caller can spread shards over workers and merge:

    language_model  likelihood: bits per character, perplexity
    continuation    prompt with a document's start, score the rest: BLEU, chrF, ROUGE-L
    diversity       distinct-n of generated text
    label_control   does asking for a topic give that topic (judged by the labeling functions)
    report          all of the above, `EvaluationReport`, shard merge

A pure library: no Ray, MLflow or Prefect here; the training flow's evaluate task calls it.
"""

from aigc.text.evaluate.continuation import (
    score_continuations,
    score_pair,
    summarize_continuations,
)
from aigc.text.evaluate.diversity import distinct_n
from aigc.text.evaluate.label_control import (
    classify_samples,
    control_labels,
    label_control_rows,
    sample_for_labels,
    summarize_label_control,
)
from aigc.text.evaluate.language_model import document_nll, summarize_lm
from aigc.text.evaluate.report import (
    HEADLINE_METRICS,
    EvaluationReport,
    EvaluationShard,
    continuation_ids,
    evaluate_generator,
    evaluate_shard,
    merge_shards,
    summarize,
)

__all__ = [
    "HEADLINE_METRICS",
    "EvaluationReport",
    "EvaluationShard",
    "classify_samples",
    "continuation_ids",
    "control_labels",
    "distinct_n",
    "document_nll",
    "evaluate_generator",
    "evaluate_shard",
    "label_control_rows",
    "merge_shards",
    "sample_for_labels",
    "score_continuations",
    "score_pair",
    "summarize",
    "summarize_continuations",
    "summarize_label_control",
    "summarize_lm",
]
