"""The model registry's side effects: register versions, move aliases, record decisions.

The gate (`aigc.registry.decide`) is pure; this module applies what it decided, in an order
that is safe to interrupt:

1. `register_challenger`: a new version of the registered model, its tags (training key,
   data version, git commit, params hash, run id, metrics) set at creation, then the alias
   `challenger` (an alias only ever points at a version that exists in full);
2. the caller re-evaluates the champion and decides;
3. `apply_decision`: the decision and its reasons go on the version and into the history,
   and only then, for a promotion, the alias `champion` moves (the previous champion is
   remembered on the new one, for `rollback`).

A crash before step 3 leaves a version with no `aigc.decision` tag; `find_by_key` returns it
and the next run finishes the decision instead of retraining. `champion` moves only here:
through a gate promotion, a manual promotion (recorded as such) or a rollback.

History: every decision is an MLflow run in the experiment `<experiment>-registry`, with
both sets of metrics, the reasons and the whole decision as JSON, so it lives wherever the
registry lives (a remote tracking server included).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from aigc.errors import UserError
from aigc.tracking import TrackingSettings, TrainingRun, register_model

CHAMPION = "champion"
CHALLENGER = "challenger"
KEY_TAG = "aigc.training_key"
DECISION_TAG = "aigc.decision"
REASONS_TAG = "aigc.decision_reasons"
PREVIOUS_CHAMPION_TAG = "aigc.previous_champion"
TAG_VALUE_LIMIT = 5000


class RegistryError(UserError):
    pass


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"

    @property
    def decided(self) -> bool:
        return DECISION_TAG in self.tags

    @property
    def metrics(self) -> dict[str, float]:
        prefix = "aigc.metric."
        return {
            key.removeprefix(prefix): float(value)
            for key, value in self.tags.items()
            if key.startswith(prefix)
        }


def _version(client, name: str, version: str) -> ModelVersion:
    found = client.get_model_version(name, str(version))
    return ModelVersion(
        name=name,
        version=str(found.version),
        run_id=found.run_id or "",
        source=found.source or "",
        tags=dict(found.tags or {}),
        aliases=tuple(found.aliases or ()),
    )


def versions(settings: TrackingSettings, name: str) -> list[ModelVersion]:
    """Every version of `name`, oldest first ([] when the model is not registered yet)."""
    client = settings.client()
    found = client.search_model_versions(f"name='{name}'")
    return sorted(
        (_version(client, name, item.version) for item in found), key=lambda v: int(v.version)
    )


def require_versions(settings: TrackingSettings, name: str) -> list[ModelVersion]:
    """Every version of `name`, oldest first; a RegistryError saying why when there is none."""
    found = versions(settings, name)
    if not found:
        raise RegistryError(_not_registered(settings, name))
    return found


def _not_registered(settings: TrackingSettings, name: str) -> str:
    registered = sorted(model.name for model in settings.client().search_registered_models())
    where = f"the tracking store {settings.tracking_uri}"
    if name in registered:
        return f"registered model {name!r} in {where} has no versions left"
    if registered:
        return (
            f"no registered model {name!r} in {where}; the registered models are {registered} "
            "(`registry.model_name` in params.yaml chooses one)"
        )
    return (
        f"no registered model {name!r} in {where}: nothing is registered there yet. "
        "`aigc run` trains and registers a first version (or point `tracking.tracking_uri` "
        "at the store that holds your models)"
    )


def by_alias(settings: TrackingSettings, name: str, alias: str) -> ModelVersion | None:
    from mlflow.exceptions import MlflowException

    client = settings.client()
    try:
        found = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _version(client, name, found.version)


def get_version(settings: TrackingSettings, name: str, version: str) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        return _version(settings.client(), name, version)
    except MlflowException as error:
        # INVALID_PARAMETER_VALUE: a version that is not a number.
        if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise
        known = ", ".join(item.version for item in require_versions(settings, name))
        raise RegistryError(
            f"registered model {name!r} has no version {version!r} (versions: {known}); "
            "`aigc registry show` lists them"
        ) from None


def find_by_key(settings: TrackingSettings, name: str, key: str) -> ModelVersion | None:
    """The newest version trained from this key (data + code + params), if any."""
    matches = [item for item in versions(settings, name) if item.tags.get(KEY_TAG) == key]
    return matches[-1] if matches else None


def register_challenger(
    settings: TrackingSettings,
    name: str,
    model_uri: str,
    key: str,
    tags: dict[str, str],
    metrics: dict[str, float],
) -> ModelVersion:
    all_tags = {
        **tags,
        KEY_TAG: key,
        **{f"aigc.metric.{metric}": repr(float(value)) for metric, value in metrics.items()},
    }
    version = register_model(settings, model_uri, name, alias=None, tags=all_tags)
    client = settings.client()
    _wait_ready(client, name, str(version))
    client.set_registered_model_alias(name, CHALLENGER, str(version))
    return _version(client, name, str(version))


def _wait_ready(client, name: str, version: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while client.get_model_version(name, version).status != "READY":
        if time.monotonic() > deadline:
            raise RegistryError(f"{name} version {version} did not become READY in {timeout}s")
        time.sleep(0.2)


def apply_decision(
    settings: TrackingSettings,
    challenger: ModelVersion,
    champion: ModelVersion | None,
    decision: Any,
    kind: str = "gate",
) -> ModelVersion | None:
    """Record the decision (version tags + history), then move `champion` on a promotion.

    Returns the champion after the decision."""
    client = settings.client()
    outcome = "promoted" if decision.promote else "rejected"
    reasons = list(decision.reasons)
    client.set_model_version_tag(
        challenger.name,
        challenger.version,
        REASONS_TAG,
        "\n".join(reasons)[:TAG_VALUE_LIMIT],
    )
    _record(settings, kind, challenger, champion, outcome, reasons, decision.to_dict())
    if decision.promote:
        _move_champion(client, challenger, champion)
    # Written last: a version counts as decided only once everything above has happened.
    client.set_model_version_tag(challenger.name, challenger.version, DECISION_TAG, outcome)
    return by_alias(settings, challenger.name, CHAMPION)


def _move_champion(client, new: ModelVersion, old: ModelVersion | None) -> None:
    if old is not None and old.version != new.version:
        client.set_model_version_tag(new.name, new.version, PREVIOUS_CHAMPION_TAG, old.version)
    client.set_registered_model_alias(new.name, CHAMPION, new.version)


def promote_manually(
    settings: TrackingSettings, name: str, version: str, reason: str
) -> ModelVersion:
    """Make `version` the champion without the gate; recorded as a manual promotion."""
    if not reason.strip():
        raise RegistryError("a manual promotion needs --reason: say why the gate is skipped")
    target = get_version(settings, name, version)
    champion = by_alias(settings, name, CHAMPION)
    client = settings.client()
    reasons = [f"manual promotion of version {version}, skipping the gate: {reason}"]
    _record(
        settings,
        "manual",
        target,
        champion,
        "promoted",
        reasons,
        {"promote": True, "reasons": reasons, "manual": True},
    )
    _move_champion(client, target, champion)
    client.set_model_version_tag(name, target.version, DECISION_TAG, "promoted (manual)")
    return get_version(settings, name, version)


def rollback(settings: TrackingSettings, name: str, reason: str = "") -> ModelVersion:
    """The champion returns to the version it replaced."""
    champion = by_alias(settings, name, CHAMPION)
    if champion is None:
        known = ", ".join(item.version for item in require_versions(settings, name))
        raise RegistryError(
            f"registered model {name!r} has no champion to roll back (versions: {known}); "
            "a champion is chosen by `aigc run`, `aigc promote` or "
            "`aigc registry promote VERSION --reason …`"
        )
    previous = champion.tags.get(PREVIOUS_CHAMPION_TAG)
    if not previous:
        raise RegistryError(
            f"champion {name} version {champion.version} replaced no earlier champion; "
            "nothing to roll back to (use `aigc registry promote VERSION --reason …`)"
        )
    target = get_version(settings, name, previous)
    reasons = [
        f"rollback from version {champion.version} to version {previous}"
        + (f": {reason}" if reason else "")
    ]
    _record(
        settings,
        "rollback",
        target,
        champion,
        "promoted",
        reasons,
        {"promote": True, "reasons": reasons, "rollback": True},
    )
    settings.client().set_registered_model_alias(name, CHAMPION, target.version)
    return get_version(settings, name, previous)


def _history_settings(settings: TrackingSettings) -> TrackingSettings:
    return replace(settings, experiment=f"{settings.experiment}-registry")


def _record(
    settings: TrackingSettings,
    kind: str,
    subject: ModelVersion,
    champion: ModelVersion | None,
    outcome: str,
    reasons: list[str],
    details: dict,
) -> None:
    tags = {
        "aigc.kind": kind,
        "aigc.model_name": subject.name,
        "aigc.version": subject.version,
        "aigc.champion_before": champion.version if champion else "",
        DECISION_TAG: outcome,
        REASONS_TAG: "\n".join(reasons)[:TAG_VALUE_LIMIT],
    }
    with TrainingRun.start(
        _history_settings(settings), run_name=f"{kind}-v{subject.version}", tags=tags
    ) as run:
        metrics = {
            f"challenger.{key}": value
            for key, value in (details.get("challenger_metrics") or {}).items()
        }
        metrics |= {
            f"champion.{key}": value
            for key, value in (details.get("champion_metrics") or {}).items()
        }
        if metrics:
            run.log_metrics(metrics, step=0)
        run.log_dict(details, "decision.json")


def history(settings: TrackingSettings, name: str) -> list[dict[str, Any]]:
    """Every recorded decision for `name`, newest first."""
    from mlflow.exceptions import MlflowException

    history_settings = _history_settings(settings)
    client = history_settings.client()
    try:
        experiment = client.get_experiment_by_name(history_settings.experiment)
    except MlflowException:
        experiment = None
    if experiment is None:
        return []
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`aigc.model_name` = '{name}'",
        order_by=["attributes.start_time DESC"],
    )
    return [
        {
            "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.info.start_time / 1000)),
            "kind": run.data.tags.get("aigc.kind", ""),
            "version": run.data.tags.get("aigc.version", ""),
            "champion_before": run.data.tags.get("aigc.champion_before", ""),
            "decision": run.data.tags.get(DECISION_TAG, ""),
            "reasons": (run.data.tags.get(REASONS_TAG) or "").splitlines(),
            "run_id": run.info.run_id,
        }
        for run in runs
    ]
