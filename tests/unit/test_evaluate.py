"""aigc.text.evaluate: likelihood, continuation, distinct-n, label control and the report."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd
import pytest
import torch
from pydantic import ValidationError
from torch import nn

from aigc.config import EvaluateParams, TokenizerParams, load_params
from aigc.data.records import text_id
from aigc.models import build_model
from aigc.models.base import IGNORE_INDEX
from aigc.text.evaluate import (
    continuation_ids,
    control_labels,
    distinct_n,
    document_nll,
    evaluate_generator,
    evaluate_shard,
    label_control_rows,
    merge_shards,
    score_pair,
    summarize,
    summarize_continuations,
    summarize_label_control,
    summarize_lm,
)
from aigc.text.evaluate.continuation import split_prompt
from aigc.text.evaluate.language_model import scoring_windows
from aigc.text.evaluate.report import real_distinct
from aigc.text.generator import TextGenerator
from aigc.text.tokenizer import TextTokenizer
from tests.conftest import REPO, TOPIC_WORDS, make_documents

LABELS = sorted(TOPIC_WORDS)  # networking, concurrency, files_io, numbers_math: params topics


@dataclass
class TinyConfig:
    block_size: int


class UniformModel(nn.Module):
    """Every next token equally likely: the likelihood of any text is known in closed form."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.config = TinyConfig(block_size)
        self.vocab_size = vocab_size
        self.unused = nn.Parameter(torch.zeros(1))  # gives the model a device

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        assert idx.size(1) <= self.config.block_size
        return torch.zeros(*idx.shape, self.vocab_size), None  # (B, T, V)


class BigramModel(nn.Module):
    """The next token depends on the previous one only, so a window loses nothing."""

    def __init__(self, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.config = TinyConfig(block_size)
        self.table = nn.Embedding(vocab_size, vocab_size)
        with torch.no_grad():
            self.table.weight.copy_(torch.randn(vocab_size, vocab_size, generator=_seeded()))

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        assert idx.size(1) <= self.config.block_size
        return self.table(idx), None  # (B, T, V)


def _seeded() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(scope="module")
def documents() -> pd.DataFrame:
    texts = list(make_documents(12, seed=3).values())
    labels = [LABELS[index % len(LABELS)] for index in range(len(texts))]
    return pd.DataFrame({"id": [text_id(t) for t in texts], "text": texts, "label": labels})


@pytest.fixture(scope="module")
def tokenizer(documents: pd.DataFrame) -> TextTokenizer:
    return TextTokenizer.train(
        documents["text"],
        LABELS + ["other"],
        vocab_size=320,
        min_frequency=TokenizerParams().min_frequency,
    )


@pytest.fixture(scope="module")
def label_params():
    return load_params(REPO / "params.yaml").label


def generator_with(model: nn.Module, tokenizer: TextTokenizer) -> TextGenerator:
    return TextGenerator(model=model, tokenizer=tokenizer, config=model.config)


@pytest.fixture(scope="module")
def tiny_gpt(tokenizer: TextTokenizer) -> TextGenerator:
    config = {
        "family": "gpt",
        "vocab_size": tokenizer.vocab_size,
        "block_size": 32,
        "n_layer": 1,
        "n_head": 2,
        "n_embd": 16,
    }
    return generator_with(build_model(config, seed=0).eval(), tokenizer)


# --- language model -------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", [1, 2, 5, 8, 64])
@pytest.mark.parametrize("length", [3, 4, 9, 20, 41])
def test_scoring_windows_score_every_token_once_with_enough_context(block_size, length):
    sequence = list(range(100, 100 + length))
    seen: list[int] = []
    for inputs, targets in scoring_windows(sequence, block_size):
        assert 1 <= len(inputs) <= block_size and len(targets) == len(inputs)
        start = sequence.index(inputs[0])
        assert inputs == sequence[start : start + len(inputs)]
        for offset, target in enumerate(targets):
            if target == IGNORE_INDEX:
                continue
            position = start + offset + 1
            assert target == sequence[position]
            seen.append(position)
            if start > 0:  # past the first window: at least half a block of real context
                assert offset + 1 >= block_size - max(1, block_size // 2)
    # Every token after <eos> <label> is scored exactly once; the label never is.
    assert seen == list(range(2, length))


def test_uniform_model_gives_tokens_times_log2_vocab_over_chars(tokenizer, documents):
    vocab = tokenizer.vocab_size
    texts = [*documents["text"][:3], "", "x"]  # long ones need windows at block_size 8
    labels = [*documents["label"][:3], LABELS[0], LABELS[1]]
    generator = generator_with(UniformModel(vocab, 8), tokenizer)
    per_document = document_nll(generator, texts, labels, EvaluateParams().batch_size)

    expected_tokens = [len(tokenizer.encode(text)) + 1 for text in texts]
    assert per_document["tokens"].tolist() == expected_tokens
    assert per_document["chars"].tolist() == [len(text) for text in texts]
    assert per_document["nll_nats"].tolist() == pytest.approx(
        [tokens * math.log(vocab) for tokens in expected_tokens], rel=1e-6
    )
    summary = summarize_lm(per_document)
    total_tokens, total_chars = sum(expected_tokens), sum(map(len, texts))
    assert summary["bits_per_character"] == pytest.approx(
        total_tokens * math.log2(vocab) / total_chars, rel=1e-6
    )
    assert summary["perplexity"] == pytest.approx(vocab, rel=1e-6)
    assert (summary["tokens"], summary["chars"]) == (total_tokens, total_chars)


def test_windowed_likelihood_is_the_true_conditional_likelihood(tokenizer, documents):
    texts, labels = documents["text"][:4].tolist(), documents["label"][:4].tolist()
    model = BigramModel(tokenizer.vocab_size, block_size=6)
    windowed = document_nll(generator_with(model, tokenizer), texts, labels, batch_size=3)

    # By hand: every token of `label text eos` after the label, from the one before it,
    # starting at the `<eos> <label>` context of training.
    log_probs = torch.log_softmax(model.table.weight.detach().double(), dim=-1)
    for row, (text, label) in enumerate(zip(texts, labels, strict=True)):
        sequence = [tokenizer.eos_id, *tokenizer.encode_document(text, label)]
        expected = -sum(
            log_probs[a, b].item() for a, b in zip(sequence[1:-1], sequence[2:], strict=True)
        )
        assert windowed["nll_nats"][row] == pytest.approx(expected, rel=1e-5)

    model.config.block_size = 512  # whole documents in one window: the same numbers
    whole = document_nll(generator_with(model, tokenizer), texts, labels, batch_size=1)
    assert whole["nll_nats"].tolist() == pytest.approx(windowed["nll_nats"].tolist(), rel=1e-5)


def test_lm_summary_of_merged_shards_equals_the_whole(tokenizer, documents):
    generator = generator_with(BigramModel(tokenizer.vocab_size, 16), tokenizer)
    texts, labels = documents["text"].tolist(), documents["label"].tolist()
    batch_size = EvaluateParams().batch_size
    whole = summarize_lm(document_nll(generator, texts, labels, batch_size))
    parts = [document_nll(generator, texts[i::3], labels[i::3], batch_size) for i in range(3)]
    merged = summarize_lm(pd.concat(parts, ignore_index=True))
    assert merged == pytest.approx(whole, rel=1e-6)


def test_unknown_label_is_named(tokenizer):
    generator = generator_with(UniformModel(tokenizer.vocab_size, 8), tokenizer)
    with pytest.raises(ValueError, match="'gui_graphics'"):
        document_nll(generator, ["some text"], ["gui_graphics"], EvaluateParams().batch_size)


# --- continuation ---------------------------------------------------------------------------


def test_split_prompt_cuts_at_whitespace_and_keeps_every_character():
    text = "The socket server answers every client request quickly."
    prompt, continuation = split_prompt(text, 0.5)
    assert prompt + continuation == text
    assert continuation[0] == " " and not prompt[-1].isspace()
    assert abs(len(prompt) - len(text) / 2) <= len("request")
    assert split_prompt("unbroken", 0.5) == ("unbr", "oken")
    assert split_prompt("ab cdefghijkl", 0.8) == ("ab", " cdefghijkl")  # no space after: back
    with pytest.raises(ValueError, match="prompt_fraction"):
        split_prompt(text, 1.0)


def test_score_pair_identical_disjoint_and_empty():
    text = "the socket server answers every client request"
    identical = score_pair(text, " " + text + "\n")
    assert identical["bleu"] == pytest.approx(100.0)
    assert identical["chrf"] == pytest.approx(100.0)
    assert identical["rougeL"] == pytest.approx(1.0)
    disjoint = score_pair("alpha beta gamma delta", "one two three four")
    assert disjoint["bleu"] == pytest.approx(0.0, abs=1e-6) and disjoint["rougeL"] == 0.0
    assert disjoint["chrf"] < 10
    assert score_pair("", text) == {"bleu": 0.0, "chrf": 0.0, "rougeL": 0.0}
    partial = score_pair("the socket server answers", text)
    assert 0 < partial["rougeL"] < 1 and 0 < partial["chrf"] < 100


def test_continuation_summary_pools_texts():
    rows = pd.DataFrame(
        [
            {
                "id": f"{index:016x}",
                "label": "networking",
                "prompt": "The",
                "reference": reference,
                "hypothesis": hypothesis,
                **score_pair(hypothesis, reference),
            }
            for index, (hypothesis, reference) in enumerate(
                [("a socket server answers", "a socket server answers"), ("x y", "p q r s")]
            )
        ]
    )
    summary = summarize_continuations(rows)
    assert summary["rougeL"] == pytest.approx(0.5)
    assert summary["sentence_bleu"] == pytest.approx(50.0)
    assert 0 < summary["bleu"] < 100 and summary["documents"] == 2
    assert summarize_continuations(rows.iloc[:1])["bleu"] == pytest.approx(100.0)


# --- diversity ------------------------------------------------------------------------------


def test_distinct_n_on_hand_made_lists():
    texts = ["a b c", "a b d"]
    assert distinct_n(texts, 1) == pytest.approx(4 / 6)  # a b c d of a b c a b d
    assert distinct_n(texts, 2) == pytest.approx(3 / 4)  # ab bc ab bd: n-grams stay in a text
    assert distinct_n(["same words", "same words"], 2) == 0.5
    assert distinct_n(["one two three"], 3) == 1.0
    assert distinct_n([], 1) == 0.0
    assert distinct_n(["", "single"], 2) == 0.0  # no bigram at all
    with pytest.raises(ValueError, match="n=0"):
        distinct_n(texts, 0)


# --- label control --------------------------------------------------------------------------


class TopicWriter:
    """A stand-in for a model that always writes about the label it is given, and about
    networking when given none."""

    labels = (*LABELS, "other")

    def __init__(self) -> None:
        self.seeds: list[int] = []

    def generate(
        self, prompts, labels, max_new_tokens=64, temperature=0.8, top_k=50, seed=0, seeds=None
    ):
        self.seeds.extend(seeds if seeds is not None else [seed])
        return [f"The {TOPIC_WORDS[label or 'networking']}." for label in labels]


def test_label_control_conditioned_accuracy_is_one_for_an_obedient_model(label_params):
    writer = TopicWriter()
    labels = control_labels(writer, label_params)
    assert labels == LABELS  # the fallback "other" is never requested
    rows = label_control_rows(
        writer, label_params, labels, EvaluateParams(samples_per_label=3, seed=7)
    )

    assert len(rows) == 2 * 3 * len(LABELS)
    assert rows["id"].is_unique  # identical samples still get distinct ids
    assert rows["id"].str.fullmatch(r"[0-9a-f]{16}").all()
    summary = summarize_label_control(rows)
    assert summary["conditioned_accuracy"] == 1.0
    assert summary["per_label"] == dict.fromkeys(LABELS, 1.0)
    assert summary["coverage"] == 1.0
    # Unconditioned samples are all networking; requests are spread evenly over the labels.
    assert summary["unconditioned_accuracy"] == pytest.approx(1 / len(LABELS))
    assert len(set(writer.seeds)) == len(writer.seeds) == len(rows)  # one seed per sample


def test_label_control_shards_over_labels_give_the_same_rows(label_params):
    settings = EvaluateParams(samples_per_label=2)
    whole = label_control_rows(TopicWriter(), label_params, LABELS, settings)
    parts = [
        label_control_rows(TopicWriter(), label_params, LABELS[i::2], settings) for i in range(2)
    ]
    merged = pd.concat(parts).sort_values("id").reset_index(drop=True)
    pd.testing.assert_frame_equal(merged, whole.sort_values("id").reset_index(drop=True))


def test_text_about_nothing_is_not_covered(label_params):
    class Mumbler(TopicWriter):
        def generate(self, prompts, labels, **kwargs):
            return ["hmm"] * len(prompts)

    settings = EvaluateParams(samples_per_label=2)
    summary = summarize_label_control(
        label_control_rows(Mumbler(), label_params, LABELS[:2], settings)
    )
    assert summary["coverage"] == 0.0 and summary["conditioned_accuracy"] == 0.0


def test_control_labels_needs_a_shared_label(label_params):
    class Stranger(TopicWriter):
        labels = ("poetry",)

    with pytest.raises(ValueError, match="poetry"):
        control_labels(Stranger(), label_params)


# --- the report -----------------------------------------------------------------------------

SETTINGS = EvaluateParams(
    batch_size=8,
    continuation_documents=4,
    max_new_tokens=12,
    samples_per_label=2,
    sample_tokens=12,
    seed=5,
)


def test_evaluate_generator_reports_every_metric_deterministically(
    tiny_gpt, documents, label_params
):
    train_texts = list(make_documents(8, seed=11).values())
    report = evaluate_generator(tiny_gpt, documents, label_params, SETTINGS, train_texts)

    for name in [
        "test_bits_per_character",
        "test_perplexity",
        "unigram_bits_per_character",
        "bleu",
        "chrf",
        "rougeL",
        "distinct_1",
        "distinct_2",
        "real_distinct_1",
        "real_distinct_2",
        "label_control_accuracy",
        "label_control_unconditioned_accuracy",
        "label_control_coverage",
    ]:
        assert math.isfinite(report.metrics[name]), name
    # An untrained model is close to uniform over its vocabulary.
    assert report.metrics["test_perplexity"] == pytest.approx(
        tiny_gpt.tokenizer.vocab_size, rel=0.3
    )
    assert report.metrics["test_documents"] == len(documents)
    per_document = report.per_document
    assert sorted(per_document["id"]) == sorted(documents["id"])
    continued = per_document.dropna(subset=["bleu"])
    assert sorted(continued["id"]) == continuation_ids(documents, 4)
    assert sorted(report.samples) == LABELS
    assert all(len(texts) == 2 for texts in report.samples.values())

    again = evaluate_generator(tiny_gpt, documents, label_params, SETTINGS, train_texts)
    assert again.to_json() == report.to_json()
    reseeded = SETTINGS.model_copy(update={"seed": 6})
    other = evaluate_generator(tiny_gpt, documents, label_params, reseeded, train_texts)
    assert other.samples != report.samples
    assert other.metrics["test_bits_per_character"] == report.metrics["test_bits_per_character"]


def test_shards_merge_to_the_single_process_report(tiny_gpt, documents, label_params):
    single = evaluate_generator(tiny_gpt, documents, label_params, SETTINGS)
    picked = continuation_ids(documents, SETTINGS.continuation_documents)
    labels = control_labels(tiny_gpt, label_params)
    shards = [
        evaluate_shard(
            tiny_gpt,
            documents.iloc[index::3],
            label_params,
            SETTINGS,
            continuation_ids=picked,
            labels=labels[index::3],
        )
        for index in range(3)
    ]
    merged = summarize(merge_shards(reversed(shards)))
    assert merged.metrics == pytest.approx(single.metrics, rel=1e-6)
    assert merged.samples == single.samples
    pd.testing.assert_frame_equal(merged.label_control, single.label_control)
    pd.testing.assert_frame_equal(merged.per_document, single.per_document, rtol=1e-6)


def test_real_text_is_scored_for_diversity_as_a_sample_would_be(tiny_gpt, documents, label_params):
    """The gate judges distinct-n against the real text's own value: random words score as
    very "diverse", so more is not better."""
    report = evaluate_generator(tiny_gpt, documents, label_params, SETTINGS)
    samples = len(report.label_control)  # conditioned and unconditioned
    assert samples == 2 * 2 * len(LABELS) > len(documents)  # so every document is pooled
    tokenizer = tiny_gpt.tokenizer
    cut = [
        tokenizer.decode(tokenizer.encode(text)[: SETTINGS.sample_tokens])
        for text in documents.sort_values("id")["text"]
    ]
    assert len(cut[0].split()) < len(documents["text"].iloc[0].split())  # really cut
    assert report.metrics["real_distinct_1"] == pytest.approx(distinct_n(cut, 1))
    assert report.metrics["real_distinct_2"] == pytest.approx(distinct_n(cut, 2))
    # an untrained model writes near-random tokens: more "diverse" than real text
    assert report.metrics["distinct_2"] > report.metrics["real_distinct_2"]
    assert "real_sample" not in report.per_document
    assert "real_sample" not in report.to_json()


def test_real_distinct_pools_as_many_documents_as_there_were_samples():
    documents = pd.DataFrame({"id": ["c", "a", "b"], "real_sample": ["x y z", "a b a b", "a b c"]})
    figures = real_distinct(documents, samples=2)  # the two smallest ids: a and b
    assert figures["real_distinct_2"] == pytest.approx(distinct_n(["a b a b", "a b c"], 2))
    assert figures["real_distinct_1"] == pytest.approx(3 / 7)
    assert real_distinct(documents, samples=10) == real_distinct(documents, samples=3)


def test_switched_off_parts_leave_their_metrics_out(tiny_gpt, documents, label_params):
    settings = EvaluateParams(continuation_documents=0, samples_per_label=0)
    report = evaluate_generator(tiny_gpt, documents.iloc[:3], label_params, settings)
    assert set(report.metrics) == {
        "test_bits_per_character",
        "test_perplexity",
        "test_tokens",
        "test_chars",
        "test_documents",
    }
    assert report.per_document["bleu"].isna().all() and report.samples == {}
    assert '"bleu": null' in report.to_json()


def test_bad_settings_and_frames_are_named(tiny_gpt, documents, label_params):
    with pytest.raises(ValidationError, match="prompt_fraction"):
        EvaluateParams(prompt_fraction=0.0)
    with pytest.raises(ValidationError, match="samples_per_label"):
        EvaluateParams(samples_per_label=-1)
    with pytest.raises(ValueError, match="'label'"):
        evaluate_generator(tiny_gpt, documents.drop(columns="label"), label_params, SETTINGS)
    doubled = pd.concat([documents.iloc[:2], documents.iloc[:1]])
    with pytest.raises(ValueError, match="repeats ids"):
        evaluate_generator(tiny_gpt, doubled, label_params, SETTINGS)


def test_rows_with_their_own_seeds_sample_the_same_alone_or_batched(tiny_gpt):
    """What lets label control sample every label in one batch, on any worker."""
    prompts = ["", "", "The socket", ""]
    labels = [LABELS[0], None, LABELS[1], LABELS[2]]
    seeds = [11, 12, 13, 14]
    together = tiny_gpt.generate(prompts, labels, max_new_tokens=16, seeds=seeds)
    alone = [
        tiny_gpt.generate([prompt], [label], max_new_tokens=16, seeds=[seed])[0]
        for prompt, label, seed in zip(prompts, labels, seeds, strict=True)
    ]
    assert together == alone
    assert len(set(together)) > 1
    again = tiny_gpt.generate(prompts, labels, max_new_tokens=16, seeds=seeds)
    assert again == together
