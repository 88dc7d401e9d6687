"""Promotion gate: may a challenger model replace the champion? A pure function, no I/O.

    policy = PromotionPolicy()  # later: the `promote` section of params.yaml
    challenger = Scorecard(name="gpt", version="7", metrics=report.metrics,
                           per_document=report.per_document)
    champion = Scorecard(name="gpt", version="6", metrics=..., per_document=...)  # or None
    decision = decide(challenger, champion, policy)
    decision.promote; decision.reasons; decision.to_dict()  # JSON-ready, for the registry

Both scorecards must come from the SAME test split: the champion is re-evaluated on the
challenger's split, so a difference is the models' and not the data's.

The checks, in this order, each with one reason sentence whether it passed or not; `promote`
is true only when every check passes.

    primary         the primary metric moved in the policy's direction (strictly)
    relative        ... by at least `min_relative_improvement` of the champion's value
    absolute        ... by at least `min_absolute_improvement`
    guard:<metric>  the guard's rule holds (below). Missing on BOTH sides: skipped (passes),
                    because neither evaluation computed it and the models are still compared
                    on equal terms. Missing on ONE side: fails, because the two evaluations
                    are not comparable (a floor needs only the challenger's value).
    bootstrap       paired bootstrap over documents: the improvement holds at `confidence`
    baseline        the challenger beats `baseline_metric` (the unigram model)

A guard catches what the primary metric can miss, judged the way its figure is read
(`GuardRule`; `tolerance` absolute, or a fraction when `relative`):

    rule        passes when                                       for a figure where
    regression  worse than the champion's by at most tolerance    more (or less) is better
    closeness   |value - reference| exceeds the champion's own    the real data has a value
                |value - reference| by at most tolerance          of its own (diversity)
    floor       worse than reference by at most tolerance; the    only a collapse is wrong
                champion is not consulted

`reference` names the metric of the same evaluation that holds the real data's value; each
side uses its own (text samples are cut by each model's tokenizer). The default guards:

    label_control_accuracy  regression, higher is better (0.05): asking for a topic should
                            give it; an undertrained model is off topic, never inflated.
    distinct_2              closeness to real_distinct_2, real test text cut to the samples'
                            length (0.05): near-random text scores as very "diverse", a
                            collapsed model as repetitive; real text has its own value.
    conditional_accuracy    regression, higher is better (0.02): label control of images.
    coverage                regression, higher is better (0.05): the share of real test images
                            with a sample inside their k-NN ball; noise lowers it, never
                            raises it, so a noisy champion's is a fair bar. Improved recall
                            is no guard: a noisy sample's ball is large, so noise inflates
                            recall (Naeem et al. 2020).
    feature_spread_ratio    floor, at least half of floor_feature_spread_ratio (real train
                            images posing as samples): noise inflates within-class spread, so
                            more is not better; but one image per class can beat a noisy
                            champion on Fréchet distance and coverage, and has spread 0.

Without a champion only `baseline` is checked: the first model must beat the unigram baseline,
and a missing baseline fails. With a champion the baseline is a sanity check run when the
challenger reports it and skipped otherwise (the champion comparison is the real gate).
`baseline_metric=None` skips it in both cases.

The bootstrap check's resampling (paired over documents, or over samples and test images for
the image gate's Fréchet distance) lives in `aigc.registry.bootstrap`, whose docstring says how
each primary metric is recomputed on a resample.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aigc.config import Direction, GuardRule, PromotionPolicy
from aigc.registry.bootstrap import FRECHET_DISTANCE, NoDocuments, bootstrap_improvement

# Thresholds are compared with this slack so that e.g. 0.80 - 0.75 counts as exactly 0.05.
_SLACK = 1e-12


@dataclass(frozen=True, kw_only=True, eq=False)
class Scorecard:
    """One model's evaluation on the test split: flat metrics, and the per-document rows
    (id, nll_nats, tokens, chars, bleu, ...) that the bootstrap resamples."""

    name: str
    metrics: Mapping[str, float]
    per_document: pd.DataFrame | None = None
    version: str | None = None
    run_id: str | None = None

    def identity(self) -> dict[str, str | None]:
        return {"name": self.name, "version": self.version, "run_id": self.run_id}


@dataclass(frozen=True)
class Decision:
    """The verdict, one reason sentence per check, and the figures it was based on."""

    promote: bool
    reasons: tuple[str, ...]
    checks: dict[str, bool]
    challenger_metrics: dict[str, float]
    champion_metrics: dict[str, float] | None
    bootstrap: dict[str, float | int | None]
    challenger: dict[str, str | None] = field(default_factory=dict)
    champion: dict[str, str | None] | None = None
    policy: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only; NaN and infinities become None."""
        return _json_ready(
            {
                "promote": self.promote,
                "reasons": list(self.reasons),
                "checks": self.checks,
                "challenger": self.challenger,
                "champion": self.champion,
                "challenger_metrics": self.challenger_metrics,
                "champion_metrics": self.champion_metrics,
                "bootstrap": self.bootstrap,
                "policy": self.policy,
            }
        )


def decide(challenger: Scorecard, champion: Scorecard | None, policy: PromotionPolicy) -> Decision:
    """Whether `challenger` should replace `champion` (None: there is none yet) under `policy`.

    Raises ValueError when the per-document rows cannot be compared (different document ids,
    duplicated ids, missing columns) or the primary metric has no bootstrap recipe."""
    checks: dict[str, bool] = {}
    reasons: list[str] = []

    def record(name: str, passed: bool, reason: str) -> None:
        checks[name] = passed
        reasons.append(reason)

    bootstrap: dict[str, float | int | None] = {"samples": 0, "confidence": policy.confidence}
    if champion is not None:
        for name, passed, reason in _primary_checks(challenger, champion, policy):
            record(name, passed, reason)
        for metric, rule in sorted(policy.guard_metrics.items()):
            passed, reason = _guard_check(metric, rule, challenger, champion)
            record(f"guard:{metric}", passed, reason)
        passed, reason, bootstrap = _bootstrap_check(challenger, champion, policy)
        record("bootstrap", passed, reason)
    passed, reason = _baseline_check(challenger, policy, has_champion=champion is not None)
    record("baseline", passed, reason)

    return Decision(
        promote=all(checks.values()),
        reasons=tuple(reasons),
        checks=checks,
        challenger_metrics=dict(challenger.metrics),
        champion_metrics=None if champion is None else dict(champion.metrics),
        bootstrap=bootstrap,
        challenger=challenger.identity(),
        champion=None if champion is None else champion.identity(),
        policy=policy.model_dump(),
    )


_PRIMARY_NAMES = ("primary", "relative", "absolute")


def _primary_checks(
    challenger: Scorecard, champion: Scorecard, policy: PromotionPolicy
) -> list[tuple[str, bool, str]]:
    metric = policy.primary_metric
    new, old = _value(challenger, metric), _value(champion, metric)
    if new is None or old is None:
        lacking = _sides_lacking(new, old)
        reason = f"cannot compare {metric}: {lacking} no finite value for it"
        return [(name, False, f"{name} check failed: {reason}") for name in _PRIMARY_NAMES]

    improvement = _improvement(new, old, policy.direction)
    change = _relative(new - old, old)
    moved = f"from {_fmt(old)} to {_fmt(new)} ({_percent(change, signed=True)})"
    better = improvement > 0
    primary = (
        f"{metric} improved {moved}"
        if better
        else f"{metric} did not improve: it went {moved}, and the policy {policy.direction}s it"
    )
    relative = _relative(improvement, old)
    needed_relative = policy.min_relative_improvement
    relative_ok = relative >= needed_relative - _SLACK
    relative_reason = (
        f"the relative improvement of {_percent(relative)} is "
        f"{'beyond' if relative_ok else 'short of'} the required {_percent(needed_relative)}"
    )
    needed_absolute = policy.min_absolute_improvement
    absolute_ok = improvement >= needed_absolute - _SLACK
    absolute_reason = (
        f"the absolute improvement of {_fmt(improvement)} is "
        f"{'at least' if absolute_ok else 'less than'} the required {_fmt(needed_absolute)}"
    )
    return [
        ("primary", better, primary),
        ("relative", relative_ok, relative_reason),
        ("absolute", absolute_ok, absolute_reason),
    ]


def _guard_check(
    metric: str, rule: GuardRule, challenger: Scorecard, champion: Scorecard
) -> tuple[bool, str]:
    new, old = _value(challenger, metric), _value(champion, metric)
    if new is None and old is None:
        return True, f"guard {metric} skipped: neither model's evaluation reports it"
    if new is None or (old is None and rule.rule != "floor"):
        side = "challenger" if new is None else "champion"
        return False, (
            f"guard {metric} failed: the {side} has no value for it, so the two evaluations "
            "are not comparable; evaluate both with the same settings"
        )
    if rule.rule == "regression":
        return _regression_check(metric, rule, new, old)
    real_new = _value(challenger, str(rule.reference))
    if real_new is None:
        return False, _lacks_reference(metric, rule, "challenger")
    if rule.rule == "floor":
        return _floor_check(metric, rule, new, real_new)
    real_old = _value(champion, str(rule.reference))
    if real_old is None:
        return False, _lacks_reference(metric, rule, "champion")
    return _closeness_check(metric, rule, new, real_new, old, real_old)


def _lacks_reference(metric: str, rule: GuardRule, side: str) -> str:
    return (
        f"guard {metric} failed: the {side}'s evaluation reports no {rule.reference}, the real "
        f"data's value that {metric} is judged against; re-evaluate it with this version of "
        "the evaluation"
    )


def _allowed(rule: GuardRule, scale: float) -> tuple[float, str]:
    """The tolerance as an amount, and as words: absolute, or a fraction of `scale`."""
    if not rule.relative:
        return rule.tolerance, _fmt(rule.tolerance)
    allowed = rule.tolerance * abs(scale)
    return allowed, f"{_fmt(allowed)} ({_percent(rule.tolerance)} of {_fmt(scale)})"


def _regression_check(metric: str, rule: GuardRule, new: float, old: float) -> tuple[bool, str]:
    regression = -_improvement(new, old, rule.direction)
    allowed, allowed_text = _allowed(rule, old)
    moved = f"{_fmt(old)} -> {_fmt(new)}"
    if regression <= allowed + _SLACK:
        return True, f"guard {metric} held: {moved}, within the allowed regression {allowed_text}"
    return False, (
        f"guard {metric} regressed: {moved} is worse by {_fmt(regression)}, more than the "
        f"allowed {allowed_text}"
    )


def _closeness_check(
    metric: str, rule: GuardRule, new: float, real_new: float, old: float, real_old: float
) -> tuple[bool, str]:
    gap_new, gap_old = abs(new - real_new), abs(old - real_old)
    allowed, allowed_text = _allowed(rule, real_new)
    where = (
        f"the challenger's {_fmt(new)} is {_fmt(gap_new)} from the real data's "
        f"{rule.reference} {_fmt(real_new)}, the champion's {_fmt(old)} was {_fmt(gap_old)} "
        f"from {_fmt(real_old)}"
    )
    if gap_new <= gap_old + allowed + _SLACK:
        return True, f"guard {metric} held: {where}; it may be at most {allowed_text} further"
    return False, (
        f"guard {metric} moved away from the real data: {where}, {_fmt(gap_new - gap_old)} "
        f"further, more than the allowed {allowed_text}"
    )


def _floor_check(metric: str, rule: GuardRule, new: float, real: float) -> tuple[bool, str]:
    allowed = rule.tolerance * abs(real) if rule.relative else rule.tolerance
    margin = _percent(rule.tolerance) if rule.relative else _fmt(rule.tolerance)
    if rule.direction == "maximize":
        bound, name, side = real - allowed, "floor", f"at least its floor {_fmt(real - allowed)}"
        source = f"the real data's {rule.reference} {_fmt(real)} less {margin}"
    else:
        bound, name, side = (
            real + allowed,
            "ceiling",
            f"at most its ceiling {_fmt(real + allowed)}",
        )
        source = f"the real data's {rule.reference} {_fmt(real)} plus {margin}"
    if _improvement(new, bound, rule.direction) >= -_SLACK:
        return True, f"guard {metric} held: {_fmt(new)} is {side} ({source})"
    return False, (
        f"guard {metric} is past its {name}: {_fmt(new)} against {_fmt(bound)} ({source}); "
        "the samples may have collapsed"
    )


def _baseline_check(
    challenger: Scorecard, policy: PromotionPolicy, *, has_champion: bool
) -> tuple[bool, str]:
    metric, baseline_metric = policy.primary_metric, policy.baseline_metric
    if baseline_metric is None:
        return True, "baseline check skipped: the policy names no baseline metric"
    value, baseline = _value(challenger, metric), _value(challenger, baseline_metric)
    if value is None:
        return False, f"baseline check failed: the challenger has no finite {metric}"
    if baseline is None:
        if has_champion:
            return True, (
                f"baseline check skipped: the challenger's evaluation reports no "
                f"{baseline_metric} (the champion comparison decides)"
            )
        return False, (
            f"there is no champion and the challenger's evaluation reports no "
            f"{baseline_metric} to compare its {metric} {_fmt(value)} with; evaluate with the "
            "baseline (or set baseline_metric: null in the policy to promote a first model "
            "unconditionally)"
        )
    beats = _improvement(value, baseline, policy.direction) > 0
    lead = "there is no champion, and " if not has_champion else ""
    verb = "beats" if beats else "does not beat"
    return beats, (
        f"{lead}{metric} {_fmt(value)} {verb} the {baseline_metric} baseline {_fmt(baseline)}"
    )


def _bootstrap_check(
    challenger: Scorecard, champion: Scorecard, policy: PromotionPolicy
) -> tuple[bool, str, dict[str, float | int | None]]:
    empty: dict[str, float | int | None] = {"samples": 0, "confidence": policy.confidence}
    if policy.bootstrap_samples == 0:
        return True, "bootstrap skipped: the policy sets bootstrap_samples to 0", empty
    if challenger.per_document is None or champion.per_document is None:
        lacking = _sides_lacking(challenger.per_document, champion.per_document)
        reason = (
            f"bootstrap failed: {lacking} no per-document scores, so the improvement in "
            f"{policy.primary_metric} cannot be shown to hold beyond chance; pass per_document "
            "from the evaluation report"
        )
        return False, reason, empty
    try:
        result = bootstrap_improvement(
            challenger.per_document,
            champion.per_document,
            metric=policy.primary_metric,
            direction=policy.direction,
            samples=policy.bootstrap_samples,
            confidence=policy.confidence,
            seed=policy.seed,
        )
    except NoDocuments as error:
        return False, f"bootstrap failed: {error}", empty
    lower, probability = result["improvement_lower"], result["probability_better"]
    level = _percent(policy.confidence, digits=0)
    unit = "generated samples" if policy.primary_metric == FRECHET_DISTANCE else "documents"
    where = f"paired bootstrap over {result['documents']} {unit} ({result['samples']} resamples)"
    if lower is not None and lower > 0:
        reason = (
            f"{where}: {policy.primary_metric} improves by at least {_fmt(lower)} with {level} "
            f"confidence (better in {_percent(probability)} of resamples)"
        )
        return True, reason, result
    reason = (
        f"{where}: the {level} lower bound of the improvement in {policy.primary_metric} is "
        f"{_fmt(lower)}, not above 0, so the improvement may be chance (better in only "
        f"{_percent(probability)} of resamples)"
    )
    return False, reason, result


def _sides_lacking(challenger: object, champion: object) -> str:
    """'the challenger has', 'the champion has' or 'the challenger and the champion have'."""
    sides = [
        side for side, got in (("challenger", challenger), ("champion", champion)) if got is None
    ]
    return f"the {' and the '.join(sides)} {'have' if len(sides) == 2 else 'has'}"


def _value(card: Scorecard, metric: str) -> float | None:
    value = card.metrics.get(metric)
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _improvement(new: float, old: float, direction: Direction) -> float:
    return old - new if direction == "minimize" else new - old


def _relative(amount: float, reference: float) -> float:
    if reference != 0:
        return amount / abs(reference)
    return 0.0 if amount == 0 else math.copysign(math.inf, amount)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _percent(value: float | None, *, signed: bool = False, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:{'+' if signed else ''}.{digits}f}%"


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(item) for item in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value
