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

The bootstrap. Documents (rows of `per_document`, matched by `id`) are resampled with
replacement `bootstrap_samples` times; each resample takes the same documents for both models
(paired), so the spread measures how much the verdict depends on which documents happen to be
in the test split, and the documents' own difficulty cancels out. On each resample the primary
metric is recomputed the way the evaluation computes it over a corpus:

    test_bits_per_character  sum(nll_nats) / ln 2 / sum(chars)   (a ratio, not a mean of ratios)
    test_perplexity          exp(sum(nll_nats) / sum(tokens))
    any per-document column  its mean over documents scored on both sides (e.g. bleu, chrf,
                             rougeL: sentence scores, so the mean, not corpus BLEU)

`improvement` = champion - challenger when minimizing (challenger - champion when maximizing);
the check passes when its `(1 - confidence)` quantile, the one-sided lower bound, is above 0.
Resampling is a (B, N) matrix of counts times the per-document columns, drawn from
`np.random.default_rng(seed)`: the same inputs give the same decision. Documents are sorted by
id first, so the row order of `per_document` does not matter. Scorecards whose document ids
differ raise ValueError; `bootstrap_samples=0` skips the check.

Images (`primary_metric: frechet_distance`, `ImagePromotionPolicy`): a Fréchet distance is a
statistic of whole sets, not a sum over rows, so `per_document` holds the per-sample rows of
`aigc.evaluate.image_report.ImageEvaluation` (generated samples matched by id, i.e. by
request, plus the real test images with their features) and the bootstrap is
`aigc.evaluate.image_metrics.frechet_difference`: samples and test images resampled within
each class, the same rows for both models, the distance recomputed on every resample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from aigc.config import Direction, GuardRule, PromotionPolicy

# The image gate's primary metric: its bootstrap resamples sample and test sets, not documents.
FRECHET_DISTANCE = "frechet_distance"

# Counts entries per resampling chunk: bounds memory at ~16 MB however many documents there are.
_CHUNK_ENTRIES = 2_000_000
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
    except _NoDocuments as error:
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


class _NoDocuments(ValueError):
    """No document is usable for the bootstrap (e.g. no document has a bleu on both sides)."""


def bootstrap_improvement(
    challenger: pd.DataFrame,
    champion: pd.DataFrame,
    *,
    metric: str,
    direction: Direction,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, float | int | None]:
    """Paired bootstrap of the improvement in `metric` over documents matched by `id`.

    Returns samples, confidence, documents, observed_improvement, improvement_lower (the
    `1 - confidence` quantile), improvement_upper (the `confidence` quantile) and
    probability_better (the share of resamples where the challenger is better)."""
    if samples < 1:
        raise ValueError(f"samples={samples} must be at least 1")
    if metric == FRECHET_DISTANCE:
        return _frechet_bootstrap(challenger, champion, direction, samples, confidence, seed)
    columns, statistic = _recipe(metric, challenger, champion)
    ids, new, old = _aligned(challenger, champion, columns)
    unscored = np.isnan(new).any(axis=1) | np.isnan(old).any(axis=1)
    if len(columns) == 1:  # a per-document score: only documents scored on both sides count
        new, old = new[~unscored], old[~unscored]
    elif unscored.any():  # a corpus sum: one NaN would poison every resample
        raise ValueError(
            f"per_document has NaN in {columns} for ids {_some(ids[unscored])}; "
            "every test document must have a likelihood"
        )
    documents = len(new)
    if documents == 0:
        raise _NoDocuments(f"no document has a {metric} score for both models")
    values = np.hstack([new, old])  # (N, 2k): the challenger's columns, then the champion's
    width = len(columns)

    def improvement(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        gain = statistic(sums[:, width:], counts) - statistic(sums[:, :width], counts)
        return gain if direction == "minimize" else -gain

    observed = improvement(values.sum(axis=0, keepdims=True), np.array([float(documents)]))
    rng = np.random.default_rng(seed)
    rows = max(1, min(samples, _CHUNK_ENTRIES // documents))
    gains = []
    for start in range(0, samples, rows):
        size = min(rows, samples - start)
        picks = rng.integers(0, documents, size=(size, documents))  # (B, N) document indices
        offsets = np.arange(size)[:, None] * documents
        counts = np.bincount((picks + offsets).ravel(), minlength=size * documents)
        counts = counts.reshape(size, documents).astype(np.float64)  # (B, N) times drawn
        gains.append(improvement(counts @ values, np.full(size, float(documents))))
    gain = np.concatenate(gains)
    return {
        "samples": samples,
        "confidence": confidence,
        "documents": documents,
        "observed_improvement": _finite(observed[0]),
        "improvement_lower": _finite(np.quantile(gain, 1.0 - confidence)),
        "improvement_upper": _finite(np.quantile(gain, confidence)),
        "probability_better": float(np.mean(gain > 0)),
    }


def _frechet_bootstrap(
    challenger: pd.DataFrame,
    champion: pd.DataFrame,
    direction: Direction,
    samples: int,
    confidence: float,
    seed: int,
) -> dict[str, float | int | None]:
    """The image gate: per-sample rows of `ImageEvaluation.per_sample` (generated samples
    paired by id, i.e. by request; the real test images, the same on both sides)."""
    # Imported here: the aigc.evaluate package brings torch, which the text gate never needs.
    from aigc.evaluate.image_metrics import frechet_difference
    from aigc.evaluate.image_report import feature_matrix, split_per_sample

    if direction != "minimize":
        raise ValueError(f"{FRECHET_DISTANCE} is a distance: the policy must minimize it")
    new_generated, new_real = split_per_sample(challenger)
    old_generated, old_real = split_per_sample(champion)
    for what, new, old in (
        ("sample", new_generated, old_generated),
        ("test image", new_real, old_real),
    ):
        if new["id"].tolist() != old["id"].tolist():
            raise ValueError(
                f"the challenger and the champion were scored on different {what} ids; "
                "re-evaluate the champion with the challenger's requests and test split"
            )
    real = feature_matrix(new_real)
    if real.shape != feature_matrix(old_real).shape or not np.allclose(
        real, feature_matrix(old_real), atol=1e-6
    ):
        raise ValueError(
            "the test images have different features in the two evaluations: evaluate the "
            "challenger and the champion with the same feature classifier (one per data version)"
        )
    if new_generated.empty:
        raise _NoDocuments("no generated samples in the per-sample rows")
    return frechet_difference(
        feature_matrix(new_generated),
        feature_matrix(old_generated),
        real,
        samples=samples,
        confidence=confidence,
        seed=seed,
        requested=new_generated["label"].to_numpy(),
        real_labels=new_real["label"].to_numpy(),
    )


Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _recipe(
    metric: str, challenger: pd.DataFrame, champion: pd.DataFrame
) -> tuple[list[str], Statistic]:
    """The per-document columns a resample sums, and the metric from those (B, k) sums."""
    if metric == "test_bits_per_character":
        return ["nll_nats", "chars"], lambda sums, _: sums[:, 0] / sums[:, 1] / math.log(2)
    if metric == "test_perplexity":
        return ["nll_nats", "tokens"], lambda sums, _: np.exp(sums[:, 0] / sums[:, 1])
    if metric != "id" and metric in challenger.columns and metric in champion.columns:
        return [metric], lambda sums, counts: sums[:, 0] / counts
    raise ValueError(
        f"the bootstrap cannot recompute the primary metric {metric!r} from per-document rows: "
        "it knows test_bits_per_character, test_perplexity and per-document columns present "
        f"on both sides (challenger has {sorted(map(str, challenger.columns))}); choose one of "
        "those, or set bootstrap_samples: 0"
    )


def _aligned(
    challenger: pd.DataFrame, champion: pd.DataFrame, columns: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The sorted ids (N,), and both sides' `columns` as (N, k) float arrays in that order."""
    for side, frame in (("challenger", challenger), ("champion", champion)):
        lacking = [column for column in ["id", *columns] if column not in frame.columns]
        if lacking:
            raise ValueError(f"the {side}'s per_document lacks columns {lacking}")
        duplicated = frame["id"][frame["id"].duplicated()].unique().tolist()
        if duplicated:
            raise ValueError(
                f"the {side}'s per_document repeats document ids {_some(duplicated)}; "
                "each test document must be scored once"
            )
    new_ids, old_ids = set(challenger["id"]), set(champion["id"])
    if new_ids != old_ids:
        raise ValueError(
            "the challenger and the champion were scored on different documents: "
            f"{len(new_ids - old_ids)} ids only in the challenger's per_document "
            f"{_some(new_ids - old_ids)}, {len(old_ids - new_ids)} only in the champion's "
            f"{_some(old_ids - new_ids)}; re-evaluate the champion on the challenger's test split"
        )
    new = challenger.set_index("id")[columns].sort_index()
    old = champion.set_index("id")[columns].reindex(new.index)
    return new.index.to_numpy(), new.to_numpy(np.float64), old.to_numpy(np.float64)


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


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _some(ids: Any, limit: int = 5) -> str:
    ordered = sorted(map(str, ids))
    more = f" and {len(ordered) - limit} more" if len(ordered) > limit else ""
    return f"{ordered[:limit]}{more}"


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
