"""Shared fixtures: offline settings for every test, small real projects on disk, the one tiny
training configuration, and what a test process starts once and shares (Prefect's test API,
a local Ray)."""

from __future__ import annotations

import contextlib
import io
import shutil
import sqlite3
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from aigc.settings import apply_offline_defaults

REPO = Path(__file__).resolve().parents[1]

apply_offline_defaults()

TOPIC_WORDS = {
    "networking": "socket server client connection http request port address protocol",
    "concurrency": "thread lock process asyncio coroutine queue concurrent event loop",
    "files_io": "file directory path read write open stream buffer filesystem",
    "numbers_math": "integer float decimal fraction arithmetic math number random",
}


def make_documents(count: int, seed: int = 0, prefix: str = "doc") -> dict[str, str]:
    """`count` distinct documents about a few topics: {file name: text}."""
    import random

    rng = random.Random(seed)
    topics = sorted(TOPIC_WORDS)
    documents = {}
    for index in range(count):
        topic = topics[index % len(topics)]
        words = TOPIC_WORDS[topic].split()
        sentences = []
        for _ in range(6):
            picked = rng.sample(words, 4)
            sentences.append(
                f"The {picked[0]} handles the {picked[1]} while each {picked[2]} "
                f"waits for its {picked[3]} (case {rng.randrange(10**6)})."
            )
        documents[f"{prefix}-{index:04d}.txt"] = " ".join(sentences)
    return documents


def write_documents(folder: Path, documents: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in documents.items():
        (folder / name).write_text(text, encoding="utf-8")


def small_params(inbox: str = "data/inbox") -> dict:
    """A tiny configuration: one folder source, the default rules, the repo's topics."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["collect"] = {"sources": [{"name": "inbox", "type": "folder", "path": inbox}]}
    params["clean"] = {"length": {"min_chars": 40}}
    return params


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, check=True, capture_output=True, text=True
    ).stdout


def make_project(root: Path, remote: Path) -> Path:
    """A real git + DVC project at `root` with the repo's dvc.yaml and code, a small config
    and a DVC remote folder `remote`, committed."""
    from aigc.data.version import init_project

    root.mkdir(parents=True)
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(
        REPO / "src" / "aigc", root / "src" / "aigc", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(REPO / "data" / "labels", root / "data" / "labels")  # text's and images'
    params = small_params()
    params["version"] = {"remote_url": str(remote)}
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_documents(root / "data" / "inbox", make_documents(60))
    init_project(root)
    git(root, "config", "user.email", "test@example.com")
    git(root, "config", "user.name", "test")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "project")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A real git + DVC project with the repo's dvc.yaml and code, and a small config."""
    return make_project(tmp_path / "project", tmp_path / "remote")


# A tiny training and evaluation config: the end-to-end tests check the machinery, not the model.
TINY = {
    "train": {
        "model": {"block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32},
        "tokenizer": {"vocab_size": 320, "min_frequency": 1},
        "batch_size": 8,
        "loop": {
            "max_steps": 30,
            "max_minutes": None,
            "warmup_steps": 5,
            "eval_every": 10,
            "checkpoint_every": 0,
            "lr": 0.005,
        },
        "ray": {"num_workers": 2},
    },
    "evaluate": {
        "continuation_documents": 3,
        "samples_per_label": 2,
        "sample_tokens": 16,
        "max_new_tokens": 16,
    },
    # No guards: with 2 samples per label, label control is noise (decide's tests cover them).
    "registry": {"policy": {"bootstrap_samples": 200, "guard_metrics": {}}},
    "image": {
        "train": {"batch_size": 32, "loop": {"max_steps": 30, "eval_every": 15}},
        "evaluate": {
            "samples_per_class": 20,
            "kid_subsets": 10,
            "kid_subset_size": 20,
            "grid_per_class": 4,
            "classifier": {"epochs": 3},
        },
        "registry": {"policy": {"bootstrap_samples": 100}},
    },
}


STORE = "mlflow.db"  # the sqlite store of a pipeline project, beside it


def tiny_pipeline_project(project: Path, tmp: Path):
    """`project` with TINY training, Ray storage and a sqlite MLflow store in `tmp`, committed;
    returns (root, the store's resolved TrackingSettings)."""
    from aigc.tracking import TrackingSettings

    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(TINY)
    params["train"]["ray"]["storage_path"] = str(tmp / "ray")
    params["tracking"] = {
        "tracking_uri": f"sqlite:///{tmp}/{STORE}",
        "artifact_root": str(tmp / "artifacts"),
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(project, "commit", "-qam", "tiny training config")
    settings = TrackingSettings(f"sqlite:///{tmp}/{STORE}", str(tmp / "artifacts"), "aigc-text")
    return project, settings.resolve(project)


@pytest.fixture
def pipeline_project(project: Path, tmp_path: Path):
    """`project` with TINY training and its stores in tmp_path: (root, tracking settings)."""
    return tiny_pipeline_project(project, tmp_path)


def tiny_overrides(tmp: Path) -> list[str]:
    """TINY, and a store, checkpoints and artifacts under `tmp`, as `--set` overrides."""

    def flatten(prefix: str, value) -> list[str]:
        if isinstance(value, dict):
            return [
                item for key, inner in value.items() for item in flatten(f"{prefix}.{key}", inner)
            ]
        return [f"{prefix}={'null' if value is None else value}"]

    text = {key: value for key, value in TINY.items() if key != "image"}
    return [item for key, value in text.items() for item in flatten(key, value)] + [
        f"tracking.tracking_uri=sqlite:///{tmp}/mlflow.db",
        f"tracking.artifact_root={tmp}/artifacts",
        f"train.ray.storage_path={tmp}/ray",
    ]


@pytest.fixture(scope="session")
def prefect_api():
    """Prefect's test harness: one temporary API (its own database) per test process."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        from prefect.settings import PREFECT_API_URL

        yield PREFECT_API_URL.value()


@pytest.fixture(scope="session")
def ray_runtime(tmp_path_factory):
    """aigc's local Ray, started once per test process and shared by every test that trains
    (a Ray Train run then costs its own start, not Ray's); yields the .aigc folder whose
    token it runs with. A process keeps the first Ray it connects to (`connect`)."""
    import ray

    from aigc.config import RayParams
    from aigc.ray import connect

    work_dir = tmp_path_factory.mktemp("ray-session") / ".aigc"
    connect(RayParams(), work_dir)
    yield work_dir
    ray.shutdown()


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    output: str  # stdout and stderr together


def aigc_in_process(root: Path, *args: str) -> CliResult:
    """`aigc ARGS` run in `root` by this process (`cli.main.main`, as the console script runs
    it): its exit code and what it printed. An exception other than SystemExit is a bug in
    aigc and propagates, traceback and all."""
    from cli.main import main

    printed = io.StringIO()
    with (
        contextlib.chdir(root),
        contextlib.redirect_stdout(printed),
        contextlib.redirect_stderr(printed),
    ):
        try:
            main(list(args))
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
    return CliResult(code, printed.getvalue())


# The first champion of `trained_project`: weak on purpose, so that the project's own tiny
# budget (TINY: 30 steps) makes a challenger that is better beyond doubt.
WEAK_CHAMPION = "train.loop.max_steps=8"


@dataclass(frozen=True)
class FirstRun:
    """What each task returned when `trained_snapshot` ran them, in pipeline order."""

    collected: object
    cleaned: object
    labeled: object
    dataset: object
    plan: tuple
    trained: object
    evaluation: object
    challenger: object
    decision: object
    plan_after: tuple


@pytest.fixture(scope="session")
def trained_snapshot(tmp_path_factory, prefect_api, ray_runtime):
    """A project trained once per test process: `pipeline_project`'s layout and its first text
    model, version 1, champion, made by calling every stage's Prefect task (`task.fn()`) in
    pipeline order as the retrain flow does, with WEAK_CHAMPION's budget. Kept as a pristine
    copy beside the folder the tests use."""
    from prefect.logging import disable_run_logger

    from aigc.config import load_params, write_effective_params
    from aigc.paths import ProjectPaths
    from tasks.clean import clean
    from tasks.collect import collect
    from tasks.evaluate import evaluate
    from tasks.label import label
    from tasks.plan import plan
    from tasks.promote import promote
    from tasks.register import register
    from tasks.train import train
    from tasks.version import version

    base = tmp_path_factory.mktemp("trained")
    root, _ = tiny_pipeline_project(make_project(base / "project", base / "remote"), base)
    params = load_params(root / "params.yaml", [WEAK_CHAMPION])
    write_effective_params(params, ProjectPaths.at(root).effective_params)
    with disable_run_logger():
        collected = collect.fn(root, params)
        cleaned = clean.fn(root)
        labeled = label.fn(root)
        dataset = version.fn(root, params, collected, labeled)
        first_plan = plan.fn(root, params, dataset.version, False)
        trained = train.fn(root, params, dataset, first_plan[0])
        evaluation = evaluate.fn(
            root, params, trained.model_uri, dataset, trained.run_id, trained.bundle_dir
        )
        challenger = register.fn(root, params, trained, evaluation, first_plan[0])
        decision = promote.fn(root, params, challenger, evaluation, None, None)
        plan_after = plan.fn(root, params, dataset.version, False)
    first = FirstRun(
        collected, cleaned, labeled, dataset, first_plan, trained, evaluation, challenger,
        decision, plan_after,
    )  # fmt: skip
    pristine = base.with_name(base.name + "-pristine")
    shutil.copytree(base, pristine, symlinks=True)
    return base, pristine, first


@pytest.fixture
def trained_project(trained_snapshot):
    """The trained project, as it was after its first run: (root, tracking settings, what
    each task of the first run returned). Restored in place, at the same path, since the
    paths that MLflow's store, DVC's remote and the project record are absolute; the sqlite
    store through sqlite's own backup, since MLflow in this process may hold it open."""
    from aigc.tracking import TrackingSettings

    base, pristine, first = trained_snapshot
    for item in base.iterdir():
        if item.name == STORE:
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()
    shutil.copytree(
        pristine,
        base,
        symlinks=True,
        dirs_exist_ok=True,
        ignore=lambda folder, names: [STORE] if Path(folder) == pristine else [],
    )
    source, target = sqlite3.connect(pristine / STORE), sqlite3.connect(base / STORE)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    root = base / "project"
    settings = TrackingSettings(f"sqlite:///{base}/{STORE}", str(base / "artifacts"), "aigc-text")
    return root, settings.resolve(root), first
