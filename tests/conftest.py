"""Shared fixtures: offline settings for every test, and small real projects on disk."""

from __future__ import annotations

import shutil
import subprocess
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
    "registry": {"policy": {"bootstrap_samples": 200}},
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


@pytest.fixture
def pipeline_project(project: Path, tmp_path: Path):
    """`project` with TINY training, Ray storage and a sqlite MLflow store in tmp_path, committed;
    returns (root, the store's resolved TrackingSettings)."""
    from aigc.tracking import TrackingSettings

    params = yaml.safe_load((project / "params.yaml").read_text())
    params.update(TINY)
    params["train"]["ray"]["storage_path"] = str(tmp_path / "ray")
    params["tracking"] = {
        "tracking_uri": f"sqlite:///{tmp_path}/mlflow.db",
        "artifact_root": str(tmp_path / "artifacts"),
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(project, "commit", "-qam", "tiny training config")
    settings = TrackingSettings(
        f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "artifacts"), "aigc-text"
    ).resolve(project)
    return project, settings
