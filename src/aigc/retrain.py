"""The retrain job's own logic, beside the stages: its change key, its plan, its lock, its summary.

    key = training_key(dataset.version, params)        # data + code + training params
    plan = plan_retrain(existing, force)                # pure: "no change" | "train" | "decide"
    timeout = 60 * params.run.lock_timeout_minutes
    with PipelineLock(root, timeout, on_wait=print):    # one run at a time per project
        ...
    markdown = summary_markdown(summary)                # the outcome, for the Prefect UI

The lock is an advisory `flock`, released by the kernel if its holder dies, so a crash never
leaves a stale lock; a second run waits (saying so, with the holder) and then ends clearly.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aigc import timing
from aigc.config import Params
from aigc.errors import UserError
from aigc.fingerprint import code_version
from aigc.modality import Modality, get_modality
from aigc.registry.decide import Decision
from aigc.registry.registry import DECISION_TAG, ModelVersion

NO_CHANGE, TRAIN, DECIDE = "no change", "train", "decide"


def training_key(
    data_version: str, params: Params, modality: Modality | str = "text", root: Path = Path(".")
) -> str:
    """One key from the data version, the code version and what else makes the modality's
    models (`Modality.training_inputs`: text's `train` section and a fine-tune's base, read
    from `root`; images' `image.train` and the worker group)."""
    inputs = get_modality(modality).training_inputs(params, Path(root))
    parts = [data_version, code_version(), *inputs]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Plan:
    action: Literal["no change", "train", "decide"]
    reason: str


def plan_retrain(existing: ModelVersion | None, force: bool) -> Plan:
    """What a run does, given the version already trained from its key (if any)."""
    if force:
        return Plan(TRAIN, "--force: retrain whatever changed")
    if existing is None:
        return Plan(TRAIN, "the training key is new: data, code or params changed")
    if existing.decided:
        return Plan(
            NO_CHANGE,
            f"version {existing.version} was trained from this key and decided "
            f"({existing.tags.get(DECISION_TAG)}); nothing to train (use --force to retrain)",
        )
    return Plan(
        DECIDE,
        f"version {existing.version} was trained from this key by a run that stopped before "
        "deciding; deciding it now instead of training again",
    )


class PipelineBusy(UserError):
    pass


class PipelineLock:
    """`with PipelineLock(root, timeout_seconds):` — exclusive across processes. A run waits
    `run.lock_timeout_minutes` (its caller converts them) for another run to finish."""

    def __init__(
        self,
        root: Path,
        timeout_seconds: float,
        poll: float = 1.0,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.path = Path(root) / ".aigc" / "pipeline.lock"
        self.timeout_seconds = timeout_seconds
        self.poll = poll
        self.on_wait = on_wait
        self.handle = None

    def __enter__(self) -> PipelineLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 (held until __exit__)
        deadline = time.monotonic() + self.timeout_seconds
        announced = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = self._holder(handle)
                if time.monotonic() >= deadline:
                    handle.close()
                    raise PipelineBusy(
                        f"another aigc run holds {self.path} ({holder}); waited "
                        f"{self.timeout_seconds:.0f}s. Let it finish, or raise "
                        "`run.lock_timeout_minutes`."
                    ) from None
                if not announced and self.on_wait is not None:
                    self.on_wait(
                        f"waiting up to {self.timeout_seconds:.0f}s for another aigc run "
                        f"({holder}) to release {self.path}"
                    )
                    announced = True
                time.sleep(self.poll)
        handle.seek(0)
        handle.truncate()
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        handle.write(f"pid {os.getpid()} since {started}\n")
        handle.flush()
        self.handle = handle
        return self

    @staticmethod
    def _holder(handle) -> str:
        handle.seek(0)
        return handle.read().strip() or "unknown"

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


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
    timings: dict[str, float] = field(default_factory=dict)  # aigc.timing's parts
    modality: str = "text"


def no_change_summary(
    existing: ModelVersion,
    champion: ModelVersion | None,
    data_version: str,
    key: str,
    plan: Plan,
    started: float,
) -> RetrainSummary:
    return RetrainSummary(
        status=NO_CHANGE,
        data_version=data_version,
        key=key,
        run_id=existing.run_id,
        challenger_version=existing.version,
        champion_version=champion.version if champion else "",
        challenger_metrics=existing.metrics,
        reasons=(f"data version {data_version[:12]}, code and training params: {plan.reason}",),
        seconds=time.perf_counter() - started,
        timings=timing.parts(),
    )


def decision_summary(
    challenger: ModelVersion,
    champion: ModelVersion | None,
    decision: Decision,
    samples: dict[str, list[str]],
    key: str,
    started: float,
) -> RetrainSummary:
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
        samples={label: texts[0] for label, texts in samples.items() if texts},
        seconds=time.perf_counter() - started,
        timings=timing.parts(),
    )


def summary_markdown(summary: RetrainSummary) -> str:
    """The run's outcome as Markdown, for the Prefect UI: status, versions, the headline
    metrics of challenger and champion side by side (on the same test split), the reasons."""
    from aigc.image.evaluate.report import IMAGE_HEADLINE_METRICS
    from aigc.text.evaluate.report import HEADLINE_METRICS

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    champion = summary.champion_metrics or {}
    lines = [
        f"# Retrain ({summary.modality}): {summary.status}",
        "",
        "| | |",
        "|---|---|",
        f"| status | **{summary.status}** |",
        f"| data version | `{summary.data_version}` |",
        f"| challenger | version {summary.challenger_version or '-'}, run `{summary.run_id}` |",
        f"| champion after the run | version {summary.champion_version or '-'} |",
        f"| training key | `{summary.key}` |",
        f"| duration | {summary.seconds:.0f} s |",
        "",
        "## Metrics",
        "",
        "| metric | challenger | champion (same test split) |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {name} | {number(summary.challenger_metrics[name])} | {number(champion.get(name))} |"
        for name in (*HEADLINE_METRICS, *IMAGE_HEADLINE_METRICS)
        if name in summary.challenger_metrics
    ]
    lines += ["", "## Reasons", ""]
    lines += [f"- {' '.join(reason.split())}" for reason in summary.reasons] or ["- (none given)"]
    return "\n".join(lines) + "\n"
