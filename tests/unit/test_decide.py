"""aigc.registry.decide: the promotion gate on hand-made scorecards."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from aigc.registry.decide import (
    GuardRule,
    PromotionPolicy,
    Scorecard,
    bootstrap_improvement,
    decide,
)

DOCUMENTS = 40
GUARDS = {"label_control_accuracy": 0.80, "distinct_2": 0.60}


def card(
    name: str,
    bits_per_character: np.ndarray,
    *,
    chars: np.ndarray | None = None,
    bleu: np.ndarray | None = None,
    extra: dict[str, float] | None = None,
    baseline: float | None = 4.0,
) -> Scorecard:
    """A scorecard whose corpus metrics are computed from its per-document rows."""
    count = len(bits_per_character)
    chars = np.full(count, 500) if chars is None else chars
    nll = np.asarray(bits_per_character) * math.log(2) * chars
    per_document = pd.DataFrame(
        {
            "id": [f"doc{index:03d}" for index in range(count)],
            "nll_nats": nll,
            "tokens": chars // 4,
            "chars": chars,
            "bleu": np.full(count, np.nan) if bleu is None else bleu,
        }
    )
    metrics = {
        "test_bits_per_character": nll.sum() / math.log(2) / chars.sum(),
        "test_perplexity": math.exp(nll.sum() / (chars // 4).sum()),
        **GUARDS,
    }
    if bleu is not None:
        metrics["bleu"] = float(np.nanmean(bleu))
    if baseline is not None:
        metrics["unigram_bits_per_character"] = baseline
    metrics.update(extra or {})
    return Scorecard(
        name=name, version="1", run_id=f"run-{name}", metrics=metrics, per_document=per_document
    )


def spread(center: float, seed: int = 1, width: float = 0.3) -> np.ndarray:
    """Per-document bits per character around `center`: documents differ in difficulty."""
    return center + np.random.default_rng(seed).uniform(-width, width, DOCUMENTS)


def test_no_champion_promotes_a_model_that_beats_the_baseline():
    decision = decide(card("first", spread(2.3)), None, PromotionPolicy())
    assert decision.promote
    assert decision.checks == {"baseline": True}
    assert decision.reasons[0].startswith("there is no champion, and test_bits_per_character 2.3")
    assert "beats the unigram_bits_per_character baseline 4" in decision.reasons[0]
    assert decision.champion_metrics is None


def test_no_champion_rejects_a_model_worse_than_the_baseline():
    decision = decide(card("first", spread(4.5)), None, PromotionPolicy())
    assert not decision.promote
    assert "does not beat the unigram_bits_per_character baseline 4" in decision.reasons[0]


def test_no_champion_and_no_baseline_is_not_promoted():
    decision = decide(card("first", spread(2.3), baseline=None), None, PromotionPolicy())
    assert not decision.promote
    assert "reports no unigram_bits_per_character" in decision.reasons[0]
    unconditional = PromotionPolicy(baseline_metric=None)
    assert decide(card("first", spread(2.3), baseline=None), None, unconditional).promote


def test_clearly_better_challenger_is_promoted():
    champion = card("champion", spread(2.3))
    challenger = card(
        "challenger", spread(2.3) * 0.9 + np.random.default_rng(2).normal(0, 0.01, DOCUMENTS)
    )
    decision = decide(challenger, champion, PromotionPolicy())
    assert decision.promote, decision.reasons
    assert list(decision.checks) == [
        "primary",
        "relative",
        "absolute",
        "guard:distinct_2",
        "guard:label_control_accuracy",
        "bootstrap",
        "baseline",
    ]
    assert len(decision.reasons) == len(decision.checks)
    assert decision.bootstrap["improvement_lower"] > 0
    assert decision.bootstrap["probability_better"] == 1.0
    assert decision.reasons[0].startswith("test_bits_per_character improved from 2.3")
    assert "(-10.0%)" in decision.reasons[0]
    assert "beyond the required 1.0%" in decision.reasons[1]
    assert "with 95% confidence" in decision.reasons[5]


def test_improvement_driven_by_one_document_fails_the_bootstrap():
    champion_bpc = spread(2.3)
    challenger_bpc = champion_bpc + 0.02  # slightly worse on every document...
    challenger_bpc[7] = 0.2  # ...but far better on one, enough to win on the whole split
    champion, challenger = card("champion", champion_bpc), card("challenger", challenger_bpc)
    decision = decide(challenger, champion, PromotionPolicy())
    assert decision.checks["primary"] and decision.checks["relative"]
    assert not decision.checks["bootstrap"]
    assert not decision.promote
    assert decision.bootstrap["improvement_lower"] < 0 < decision.bootstrap["improvement_upper"]
    assert "not above 0, so the improvement may be chance" in decision.reasons[5]


def test_improvement_below_the_relative_threshold_is_not_promoted():
    champion_bpc = spread(2.3)
    decision = decide(
        card("challenger", champion_bpc * 0.995), card("champion", champion_bpc), PromotionPolicy()
    )
    assert decision.checks["primary"] and decision.checks["bootstrap"]
    assert not decision.checks["relative"]
    assert not decision.promote
    assert decision.reasons[1] == (
        "the relative improvement of 0.5% is short of the required 1.0%"
    )


def test_absolute_threshold():
    champion_bpc = spread(2.3)
    challenger = card("challenger", champion_bpc * 0.95)
    decision = decide(
        challenger, card("champion", champion_bpc), PromotionPolicy(min_absolute_improvement=0.5)
    )
    assert not decision.checks["absolute"] and not decision.promote
    assert "less than the required 0.5" in decision.reasons[2]


def test_guard_regression_beyond_tolerance_blocks_promotion():
    champion_bpc = spread(2.3)
    challenger = card("challenger", champion_bpc * 0.9, extra={"label_control_accuracy": 0.70})
    decision = decide(challenger, card("champion", champion_bpc), PromotionPolicy())
    assert not decision.promote
    assert not decision.checks["guard:label_control_accuracy"]
    assert decision.checks["guard:distinct_2"]
    failed = [reason for reason in decision.reasons if "regressed" in reason]
    assert failed == [
        "guard label_control_accuracy regressed: 0.8 -> 0.7 is worse by 0.1, "
        "more than the allowed 0.05"
    ]


def test_guard_within_tolerance_and_relative_tolerance():
    champion_bpc = spread(2.3)
    challenger = card("challenger", champion_bpc * 0.9, extra={"label_control_accuracy": 0.75})
    champion = card("champion", champion_bpc)
    assert decide(challenger, champion, PromotionPolicy()).promote  # exactly 0.05: allowed
    strict = PromotionPolicy(
        guard_metrics={"label_control_accuracy": GuardRule(tolerance=0.05, relative=True)}
    )
    decision = decide(challenger, champion, strict)  # 5% of 0.8 is 0.04
    assert not decision.checks["guard:label_control_accuracy"]
    assert "allowed 0.04 (5.0% of 0.8)" in decision.reasons[3]


def test_guard_missing_on_both_sides_is_skipped_on_one_side_fails():
    champion_bpc = spread(2.3)
    policy = PromotionPolicy(guard_metrics={"rougeL": GuardRule(tolerance=0.01)})
    challenger, champion = card("challenger", champion_bpc * 0.9), card("champion", champion_bpc)
    both_missing = decide(challenger, champion, policy)
    assert both_missing.promote
    assert "guard rougeL skipped: neither model's evaluation reports it" in both_missing.reasons

    challenger = card("challenger", champion_bpc * 0.9, extra={"rougeL": 0.4})
    one_missing = decide(challenger, champion, policy)
    assert not one_missing.promote
    assert one_missing.reasons[3].startswith("guard rougeL failed: the champion has no value")


def test_maximized_primary_metric_bleu():
    policy = PromotionPolicy(
        primary_metric="bleu", direction="maximize", baseline_metric=None, guard_metrics={}
    )
    old_bleu = np.random.default_rng(3).uniform(10, 30, DOCUMENTS)
    old_bleu[::5] = np.nan  # not every document was continued
    new_bleu = old_bleu + 3.0
    bpc = spread(2.3)
    better = decide(card("new", bpc, bleu=new_bleu), card("old", bpc, bleu=old_bleu), policy)
    assert better.promote, better.reasons
    assert better.bootstrap["documents"] == DOCUMENTS - DOCUMENTS // 5
    assert better.bootstrap["observed_improvement"] == pytest.approx(3.0)
    worse = decide(card("new", bpc, bleu=old_bleu - 3), card("old", bpc, bleu=old_bleu), policy)
    assert not worse.promote
    assert not worse.checks["primary"] and not worse.checks["bootstrap"]
    assert "the policy maximizes it" in worse.reasons[0]


def test_bootstrap_uses_the_corpus_ratio_not_a_mean_of_document_ratios():
    chars = np.array([100, 1000])
    old = card("old", np.array([3.0, 2.0]), chars=chars).per_document
    new = card("new", np.array([1.0, 2.0]), chars=chars).per_document
    result = bootstrap_improvement(
        new,
        old,
        metric="test_bits_per_character",
        direction="minimize",
        samples=10,
        confidence=0.95,
        seed=0,
    )
    corpus = (3.0 * 100 + 2.0 * 1000) / 1100 - (1.0 * 100 + 2.0 * 1000) / 1100
    assert result["observed_improvement"] == pytest.approx(corpus)  # a mean would give 1.0


def test_mismatched_document_ids_raise():
    bpc = spread(2.3)
    champion = card("champion", bpc)
    challenger = card("challenger", bpc * 0.9)
    challenger.per_document.loc[0, "id"] = "elsewhere"
    with pytest.raises(
        ValueError, match="scored on different documents.*re-evaluate the champion"
    ):
        decide(challenger, champion, PromotionPolicy())


def test_unsupported_primary_metric_raises():
    bpc = spread(2.3)
    policy = PromotionPolicy(primary_metric="distinct_2", direction="maximize")
    with pytest.raises(ValueError, match="'distinct_2'"):
        decide(card("new", bpc, extra={"distinct_2": 0.9}), card("old", bpc), policy)


def test_bootstrap_missing_rows_fails_and_zero_samples_skips():
    bpc = spread(2.3)
    champion = card("champion", bpc)
    bare = Scorecard(name="champion", metrics=champion.metrics)
    challenger = card("challenger", bpc * 0.9)
    decision = decide(challenger, bare, PromotionPolicy())
    assert not decision.promote
    assert decision.reasons[5].startswith("bootstrap failed: the champion has no per-document")
    skipped = decide(challenger, bare, PromotionPolicy(bootstrap_samples=0))
    assert skipped.promote
    assert "bootstrap skipped" in skipped.reasons[5]


def test_decision_is_deterministic_and_independent_of_row_order():
    bpc = spread(2.3)
    challenger = card(
        "challenger", bpc * 0.98 + np.random.default_rng(4).normal(0, 0.05, DOCUMENTS)
    )
    champion = card("champion", bpc)
    first = decide(challenger, champion, PromotionPolicy())
    assert decide(challenger, champion, PromotionPolicy()) == first
    shuffled = Scorecard(
        name="champion",
        metrics=champion.metrics,
        per_document=champion.per_document.sample(frac=1.0, random_state=0),
    )
    assert decide(challenger, shuffled, PromotionPolicy()).bootstrap == first.bootstrap
    other_seed = decide(challenger, champion, PromotionPolicy(seed=1))
    assert other_seed.bootstrap["improvement_lower"] != first.bootstrap["improvement_lower"]


def test_to_dict_is_json_ready():
    bpc = spread(2.3)
    challenger = card("challenger", bpc * 0.9, extra={"chrf": float("nan")})
    decision = decide(challenger, card("champion", bpc), PromotionPolicy())
    document = decision.to_dict()
    assert json.loads(json.dumps(document, allow_nan=False)) == document
    assert document["challenger_metrics"]["chrf"] is None
    assert document["challenger"] == {
        "name": "challenger",
        "version": "1",
        "run_id": "run-challenger",
    }
    assert document["policy"]["guard_metrics"]["distinct_2"]["tolerance"] == 0.05
    assert len(document["reasons"]) == len(document["checks"])


def test_policy_is_checked():
    with pytest.raises(ValidationError, match="min_relative_improvment"):
        PromotionPolicy(min_relative_improvment=0.02)  # a typo must not pass silently
    with pytest.raises(ValidationError, match="confidence"):
        PromotionPolicy(confidence=1.5)
