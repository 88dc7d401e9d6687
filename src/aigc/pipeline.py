"""What the retrain job needs beyond the stages: its change key, its lock, its scorecards.

- `training_key(data_version, params)`: one key from the data version, the code version
  (a hash of aigc's own source files, so uncommitted edits count) and the training params.
  A registered model version carrying the same key means there is nothing new to train.
- `PipelineLock`: one retrain at a time per project. A second run waits for the first
  (up to a timeout), then ends with a message naming the holder; `data/` and the registry
  are never written by two runs at once. An advisory `flock`, released by the kernel if
  the holder dies, so a crash never leaves a stale lock.
- `load_scorecard` / `scorecard`: the evaluation a promotion decision reads (the training
  run keeps it under `.aigc/evaluations/<run id>/`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from aigc.config import Params
from aigc.evaluate import EvaluationReport
from aigc.fingerprint import code_version
from aigc.paths import ProjectPaths
from aigc.registry.decide import Decision, Scorecard
from aigc.registry.registry import CHAMPION, DECISION_TAG, ModelVersion, by_alias
from aigc.tracking import TrackingSettings
from aigc.train.stage import TrainedModel


def training_key(data_version: str, params: Params) -> str:
    parts = [data_version, code_version(), params.section_hash("train")]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


class PipelineBusy(RuntimeError):
    pass


class PipelineLock:
    """`with PipelineLock(root, timeout_seconds):` — exclusive across processes."""

    def __init__(self, root: Path, timeout_seconds: float = 3600.0, poll: float = 1.0) -> None:
        self.path = Path(root) / ".aigc" / "pipeline.lock"
        self.timeout_seconds = timeout_seconds
        self.poll = poll
        self.handle = None

    def __enter__(self) -> PipelineLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held until __exit__)
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    handle.close()
                    raise PipelineBusy(
                        f"another aigc run holds {self.path} ({holder}); waited "
                        f"{self.timeout_seconds:.0f}s. Let it finish, or raise "
                        "`run.lock_timeout_minutes`."
                    ) from None
                time.sleep(self.poll)
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.write(f"pid {os.getpid()} since {started}\n")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def load_scorecard(
    folder: Path, name: str, version: str | None, run_id: str | None
) -> Scorecard | None:
    """The scorecard a training or evaluation run saved (train.stage.save_evaluation)."""
    if not (folder / "metrics.json").exists():
        return None
    return Scorecard(
        metrics=json.loads((folder / "metrics.json").read_text()),
        per_document=pd.read_parquet(folder / "per_document.parquet"),
        name=name,
        version=version,
        run_id=run_id,
    )


def scorecard(
    report: EvaluationReport, name: str, version: str | None, run_id: str | None
) -> Scorecard:
    return Scorecard(
        metrics=dict(report.metrics),
        per_document=report.per_document,
        name=name,
        version=version,
        run_id=run_id,
    )


@dataclass(frozen=True)
class RetrainSummary:
    """What one retrain run did, for the console and for callers (tests, schedulers)."""

    status: str  # "promoted" | "rejected" | "no change"
    data_version: str
    key: str
    run_id: str
    challenger_version: str
    champion_version: str  # after the run
    challenger_metrics: dict[str, float] = field(default_factory=dict)
    champion_metrics: dict[str, float] | None = None
    reasons: tuple[str, ...] = ()
    samples: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def no_change_summary(
    paths: ProjectPaths,
    params: Params,
    existing: ModelVersion,
    data_version: str,
    key: str,
    started: float,
) -> RetrainSummary:
    settings = TrackingSettings.from_params(params.tracking.model_dump()).resolve(paths.root)
    champion = by_alias(settings, existing.name, CHAMPION)
    return RetrainSummary(
        status="no change",
        data_version=data_version,
        key=key,
        run_id=existing.run_id,
        challenger_version=existing.version,
        champion_version=champion.version if champion else "",
        challenger_metrics=existing.metrics,
        reasons=(
            f"data version {data_version[:12]}, code and training params are those of "
            f"version {existing.version} (key {key}), already decided: "
            f"{existing.tags.get(DECISION_TAG)}; nothing to train (use --force to retrain)",
        ),
        seconds=time.perf_counter() - started,
    )


def retrain_summary(
    paths: ProjectPaths,
    params: Params,
    challenger: ModelVersion,
    decision: Decision,
    trained: TrainedModel | None,
    key: str,
    started: float,
) -> RetrainSummary:
    settings = TrackingSettings.from_params(params.tracking.model_dump()).resolve(paths.root)
    champion = by_alias(settings, challenger.name, CHAMPION)
    samples = {
        label: texts[0] for label, texts in (trained.samples if trained else {}).items() if texts
    }
    return RetrainSummary(
        status="promoted" if decision.promote else "rejected",
        data_version=challenger.tags.get("aigc.data_version", ""),
        key=key,
        run_id=challenger.run_id,
        challenger_version=challenger.version,
        champion_version=champion.version if champion else "",
        challenger_metrics=dict(decision.challenger_metrics),
        champion_metrics=dict(decision.champion_metrics) if decision.champion_metrics else None,
        reasons=tuple(decision.reasons),
        samples=samples,
        seconds=time.perf_counter() - started,
    )
