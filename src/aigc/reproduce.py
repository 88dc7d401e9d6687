"""Data-versioned reproduction: rebuild a model from its data version and prove it matches.

    report = reproduce(paths, params, target="aigc-text/3")      # or run_id="…"
    # or in two steps, to know what it will train first (the CLI's progress bar does):
    reproduction = plan_reproduction(paths, params, target="aigc-text/3")   # step 1
    report = carry_out(paths, params, reproduction, on_progress=…)         # steps 2 to 5

1. find the original training run (a registered version names it) and read what it
   recorded: the data version, the full params (`params.json`), the steps it trained, the
   code version and git commit, its metrics and the hash of its weights;
2. restore that data version from DVC (cache, else remote; sources are never collected
   again) into an isolated folder, and check every file against the DVC manifest, so a
   tampered cache fails loudly instead of training on the wrong bytes;
3. warn when the current code differs from the recorded code;
4. retrain with the recorded params and seed in that folder, for exactly the recorded
   number of steps (a time budget is not reproducible; the learning-rate schedule keeps
   the original horizon), evaluate, and tag the new MLflow run `reproduction_of`;
5. compare every metric within `tolerance` (relative) and, on CPU, the weights' hash.
The report (JSON) says what matched; `matches` is what the CLI's exit code follows.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from aigc.config import (
    ImageTrainParams,
    Params,
    RayParams,
    TrackingParams,
    TrainParams,
    is_uri,
)
from aigc.data.version import checkout_version, configure_remote
from aigc.errors import UserError
from aigc.fingerprint import code_version
from aigc.modality import Modality, data_of, get_modality
from aigc.paths import ProjectPaths
from aigc.registry.registry import get_version
from aigc.stages.version import Dataset
from aigc.tracking import TrackingSettings, TrainingRun, get_run, git_commit

# How far (relative) a reproduced metric may be from the original's; not a params setting:
# the CLI's --tolerance (a reproduction is judged, not configured).
TOLERANCE = 1e-6
# Measurements of the machine, not of the model: never compared.
UNCOMPARED_METRICS = frozenset(
    {"tokens_per_second", "images_per_second", "peak_memory_mb", "restarts"}
)


def compared(metric: str) -> bool:
    """Whether a reproduction must match `metric`: not a timing (`*_seconds`) or the like."""
    return metric not in UNCOMPARED_METRICS and not metric.endswith("_seconds")


class ReproductionError(UserError):
    pass


@dataclass
class ReproductionReport:
    original_run_id: str
    reproduction_run_id: str
    data_version: str
    tolerance: float
    metrics: list[dict] = field(default_factory=list)
    weights: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    matches: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def resolve_run(settings: TrackingSettings, target: str | None, run_id: str | None) -> str:
    if bool(target) == bool(run_id):
        raise ReproductionError("give either NAME/VERSION or --run-id, not both or neither")
    if run_id:
        return get_run(settings, run_id).info.run_id
    name, sep, version = (target or "").rpartition("/")
    if not sep or not name or not version:
        raise ReproductionError(f"{target!r} is not NAME/VERSION (e.g. aigc-text/3)")
    found = get_version(settings, name, version)
    if not found.run_id:
        raise ReproductionError(f"{target} names no training run; it cannot be reproduced")
    return found.run_id


def recorded_params(settings: TrackingSettings, run_id: str) -> Params:
    with tempfile.TemporaryDirectory() as directory:
        try:
            path = settings.client().download_artifacts(run_id, "params.json", directory)
        except Exception as error:  # MLflow raises several kinds for a missing artifact
            raise ReproductionError(
                f"run {run_id} has no params.json artifact (was it trained by aigc train?): "
                f"{error}"
            ) from None
        return Params.model_validate(json.loads(Path(path).read_text()))


def verify_dataset(root: Path, folder: Path, version: str) -> None:
    """Every restored file must match the hash the DVC manifest of `version` records."""
    manifest = root / ".dvc" / "cache" / "files" / "md5" / version[:2] / f"{version[2:]}.dir"
    if not manifest.exists():
        raise ReproductionError(f"DVC manifest of data version {version} is not in the cache")
    data = manifest.read_bytes()
    if hashlib.md5(data).hexdigest() != version:  # noqa: S324 (DVC's own content hash)
        raise ReproductionError(
            f"the DVC cache's manifest of data version {version} is corrupted (its content "
            f"does not hash to {version}). Fix: delete {manifest} and run the reproduction "
            "again, so that it is fetched from the remote."
        )
    for entry in json.loads(data):
        path = folder / entry["relpath"]
        actual = hashlib.md5(path.read_bytes()).hexdigest() if path.exists() else "missing"  # noqa: S324
        if actual != entry["md5"]:
            raise ReproductionError(
                f"data version {version}: {entry['relpath']} does not match its recorded hash "
                f"({actual} != {entry['md5']}). DVC repairs a damaged cache from the remote, "
                "so the copy there is corrupted too. Nothing was trained. Fix: restore object "
                f"files/md5/{entry['md5'][:2]}/{entry['md5'][2:]} from a good copy (another "
                "clone's .dvc/cache or a backup of the remote), then run again."
            )


def reproduction_params(
    original: Params,
    steps: int,
    workdir: Path,
    here: RayParams | None = None,
    modality: Modality | str = "text",
) -> Params:
    """The recorded params, made reproducible: exact steps, absolute tracking, own storage.

    Where training runs is this machine's choice, not the recording's: the Ray cluster and
    a shared checkpoint storage (a URI) come from `here`, this machine's Ray params."""
    modality = get_modality(modality)
    here = here or original.train.ray
    storage = here.storage_path if is_uri(here.storage_path) else str(workdir / "ray")
    ray = original.train.ray.model_copy(update={"storage_path": storage, "address": here.address})
    params = original.model_copy(update={"train": original.train.model_copy(update={"ray": ray})})
    section = modality.train_section(params)
    loop = section.loop
    exact = loop.model_copy(
        update={
            "max_steps": steps,
            "max_minutes": None,
            "max_tokens": None,
            "lr_decay_steps": loop.lr_decay_steps or loop.max_steps,  # the original horizon
        }
    )
    return modality.with_train_section(params, section.model_copy(update={"loop": exact}))


@dataclass(frozen=True)
class Reproduction:
    """What a reproduction of run `run_id` trains, known before anything is restored or
    trained: the original run's tags and metrics, and its params made reproducible."""

    run_id: str
    tags: dict[str, str]
    metrics: dict[str, float]
    params: Params  # reproduction_params(): exactly the recorded steps
    workdir: Path

    @property
    def modality(self) -> Modality:
        return get_modality(self.tags.get("aigc.modality", "text"))

    @property
    def data_version(self) -> str:
        return self.tags["aigc.data_version"]

    @property
    def steps(self) -> int:
        return int(self.tags["aigc.steps"])

    @property
    def train(self) -> TrainParams | ImageTrainParams:
        """The section it trains with: its loop's only budget is the recorded steps."""
        return self.modality.train_section(self.params)

    @property
    def announcement(self) -> str:
        return (
            f"reproducing run {self.run_id[:12]}: training the recorded {self.steps} steps "
            "(the original run's steps; a time budget is not reproducible)"
        )


def plan_reproduction(
    paths: ProjectPaths, params: Params, target: str | None = None, run_id: str | None = None
) -> Reproduction:
    """Find the original run (`target` NAME/VERSION or `run_id`) and read what it recorded;
    only the tracking store is read."""
    settings = TrackingSettings.of(params.tracking, paths.root)
    run_id = resolve_run(settings, target, run_id)
    original = get_run(settings, run_id)
    tags = dict(original.data.tags)
    if not tags.get("aigc.data_version") or "aigc.steps" not in tags:
        raise ReproductionError(
            f"run {run_id} lacks the aigc.data_version or aigc.steps tag, so it was not made by "
            "`aigc train` or `aigc run`; reproduce a training run of aigc (`aigc registry show` "
            "lists them)"
        )
    modality = get_modality(tags.get("aigc.modality", "text"))
    workdir = paths.work / "reproductions" / run_id
    recorded = reproduction_params(
        recorded_params(settings, run_id),
        int(tags["aigc.steps"]),
        workdir,
        params.train.ray,
        modality,
    )
    experiment = settings.client().get_experiment(original.info.experiment_id).name
    recorded = recorded.model_copy(
        update={
            "tracking": TrackingParams(
                tracking_uri=settings.tracking_uri,
                artifact_root=settings.artifact_root,
                experiment=experiment,
            )
        }
    )
    recorded = modality.with_experiment(
        _with_recorded_base(recorded, tags, paths.root), experiment
    )
    return Reproduction(run_id, tags, dict(original.data.metrics), recorded, workdir)


def _with_recorded_base(recorded: Params, tags: dict[str, str], root: Path) -> Params:
    """A fine-tuned model's params with its base found at the recorded path (relative to this
    project) and checked against the recorded content hash: another base is another model."""
    from aigc.models.configs import HFConfig
    from aigc.models.hf import BaseModelMissing, base_sha256, resolve_base

    model = recorded.train.model
    if not isinstance(model, HFConfig):
        return recorded
    wanted = tags.get("aigc.base_model.sha256", "")
    try:
        folder = resolve_base(model.path, root)
    except BaseModelMissing as error:
        raise ReproductionError(
            f"{error}. The recorded base has sha256 {wanted}; put that model back at "
            f"{model.path!r} to reproduce"
        ) from None
    found = base_sha256(folder)
    if found != wanted:
        raise ReproductionError(
            f"the base model at {folder} has changed: its files hash to {found}, the run was "
            f"trained from {wanted}. Put the recorded base back at {model.path!r} (or train "
            "anew with `aigc run`: a changed base is a new model)"
        )
    train = recorded.train.model_copy(
        update={"model": model.model_copy(update={"path": str(folder)})}
    )
    return recorded.model_copy(update={"train": train})


def reproduce(
    paths: ProjectPaths,
    params: Params,
    target: str | None = None,
    run_id: str | None = None,
    tolerance: float = TOLERANCE,
    on_progress=None,
) -> ReproductionReport:
    reproduction = plan_reproduction(paths, params, target, run_id)
    return carry_out(paths, params, reproduction, tolerance, on_progress)


def carry_out(
    paths: ProjectPaths,
    params: Params,
    reproduction: Reproduction,
    tolerance: float = TOLERANCE,
    on_progress=None,
) -> ReproductionReport:
    """Steps 2 to 5 of the module's docstring, for a planned reproduction."""
    settings = TrackingSettings.of(params.tracking, paths.root)
    client = settings.client()
    run_id, tags, data_version = reproduction.run_id, reproduction.tags, reproduction.data_version
    report = ReproductionReport(run_id, "", data_version, tolerance)
    if tags.get("aigc.code_version") != code_version():
        report.warnings.append(
            f"the code differs from the recorded code (version {tags.get('aigc.code_version')}"
            f", git {tags.get('aigc.git_commit')}; now {code_version()}, git "
            f"{git_commit(paths.root)}): metrics may legitimately differ"
        )

    modality, workdir, recorded = reproduction.modality, reproduction.workdir, reproduction.params
    remote = params.version.remote_name
    configure_remote(paths.root, remote, params.version.remote_url)
    restored = checkout_version(
        paths.root,
        data_version,
        workdir / "labeled",
        data_of(modality),
        remote,
    )
    verify_dataset(paths.root, restored, data_version)
    workpaths = ProjectPaths.at(workdir)
    dataset = Dataset(restored, data_version, modality.name)
    from aigc.stages.evaluate import evaluate
    from aigc.stages.train import train

    trained = train(
        workpaths,
        recorded,
        dataset,
        on_progress=on_progress,
        extra_tags={"reproduction_of": run_id},
    )
    evaluate(
        workpaths,
        recorded,
        trained.model_uri,
        dataset,
        record_in=trained.run_id,
        bundle_dir=trained.bundle_dir,
    )
    report.reproduction_run_id = trained.run_id
    reproduced = client.get_run(trained.run_id)
    for name, value in sorted(reproduction.metrics.items()):
        if not compared(name) or name not in reproduced.data.metrics:
            continue
        again = reproduced.data.metrics[name]
        ok = abs(again - value) <= tolerance * max(1.0, abs(value))
        report.metrics.append(
            {
                "metric": name,
                "original": value,
                "reproduced": again,
                "difference": again - value,
                "ok": ok,
            }
        )
    weights = (tags.get("aigc.weights_sha256"), reproduced.data.tags.get("aigc.weights_sha256"))
    report.weights = {
        "original": weights[0],
        "reproduced": weights[1],
        "equal": weights[0] == weights[1],
        "compared": params.train.ray.use_gpu is not True,
    }
    report.matches = all(row["ok"] for row in report.metrics) and (
        report.weights["equal"] or not report.weights["compared"]
    )
    (workdir / "report.json").write_text(report.to_json())
    run = TrainingRun.resume(settings, trained.run_id)
    run.log_artifact(workdir / "report.json", "reproduction")
    run.set_tags({"aigc.reproduction_matches": str(report.matches).lower()})
    run.end()
    return report
