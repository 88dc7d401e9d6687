"""Where runs are tracked and when a model is promoted: the tracking store, the registered
model and its promotion policy (the gate aigc.registry.decide applies, with its guard
rules), and the run section (locks and Prefect's start-up wait)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    field_validator,
    model_validator,
)

from aigc.config.base import Section


class TrackingParams(Section):
    tracking_uri: str = "sqlite:///mlflow/mlflow.db"
    artifact_root: str | None = "mlflow/artifacts"  # None: where the tracking server says
    experiment: str = "aigc-text"


Direction = Literal["minimize", "maximize"]


GuardKind = Literal["regression", "closeness", "floor"]


class GuardRule(BaseModel):
    """How the gate judges one guard metric (aigc.registry.decide's table says why each
    default guard has its rule). `tolerance` is absolute, or a fraction when `relative` (of the
    champion's value for `regression`, of the real data's value otherwise).

    regression  `direction` is better: worse than the champion by at most `tolerance`.
    closeness   real data has a value of its own, the metric `reference` of the same
                evaluation: no further from it than the champion is from its own, plus
                `tolerance`. For figures where more is not better (diversity).
    floor       worse than the real data's value `reference` by at most `tolerance` (a
                floor when maximizing): against collapse; the champion is not consulted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: GuardKind = "regression"
    direction: Direction = "maximize"
    tolerance: float = Field(default=0.0, ge=0.0)
    relative: bool = False
    reference: str | None = None  # closeness and floor: the real data's value of the metric

    @model_validator(mode="after")
    def _reference_fits_rule(self) -> GuardRule:
        if self.rule == "regression" and self.reference is not None:
            raise ValueError(
                f"reference={self.reference!r} is only read by the closeness and floor rules; "
                "set rule: closeness (or floor), or drop reference"
            )
        if self.rule != "regression" and self.reference is None:
            raise ValueError(
                f"rule {self.rule} compares with the real data's value: name the metric that "
                "holds it in reference (e.g. reference: real_distinct_2)"
            )
        return self


def _default_guards() -> dict[str, GuardRule]:
    return {
        "label_control_accuracy": GuardRule(direction="maximize", tolerance=0.05),
        "distinct_2": GuardRule(rule="closeness", reference="real_distinct_2", tolerance=0.05),
    }


class PromotionPolicy(BaseModel):
    """When a challenger replaces the champion (see the module docstring for each check)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    primary_metric: str = "test_bits_per_character"
    direction: Direction = "minimize"
    # Non-negative types rather than Field(ge=0): ImagePromotionPolicy gives these other
    # defaults and must keep the bounds, which a redeclared Field would drop.
    min_absolute_improvement: NonNegativeFloat = 0.0
    min_relative_improvement: NonNegativeFloat = 0.01
    guard_metrics: dict[str, GuardRule] = Field(default_factory=_default_guards)
    bootstrap_samples: NonNegativeInt = 1000
    confidence: float = Field(default=0.95, gt=0.0, lt=1.0)
    seed: int = 0
    baseline_metric: str | None = "unigram_bits_per_character"

    @field_validator("guard_metrics", mode="before")
    @classmethod
    def _guard_defaults(cls, value: Any) -> Any:
        # An entry for a default guard keeps the default's keys it leaves out, unless it names
        # another rule: `distinct_2.tolerance=0.1` must not turn closeness into regression.
        if not isinstance(value, dict):
            return value
        defaults = cls.model_fields["guard_metrics"].default_factory()  # type: ignore[misc]
        merged = dict(value)
        for name, entry in value.items():
            default = defaults.get(name)
            if (
                isinstance(entry, dict)
                and default is not None
                and default.rule == entry.get("rule", default.rule)
            ):
                merged[name] = default.model_dump() | entry
        return merged


class RegistryParams(Section):
    model_name: str = "aigc-text"
    policy: PromotionPolicy = PromotionPolicy()


class RunParams(Section):
    lock_timeout_minutes: float = Field(default=60.0, ge=0)
    # How long a command waits for Prefect's temporary API server to answer (run, data
    # refresh, schedule). Prefect's own limit, 20 s, is missed on a loaded machine; this one
    # replaces it (and PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS) for aigc's server.
    prefect_start_timeout_seconds: float = Field(default=120.0, gt=0)
