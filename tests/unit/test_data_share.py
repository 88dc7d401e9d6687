"""aigc.data.share and `aigc data commit`, in a real temporary git repository.

A project whose data flow has written the files that name a data version (dvc.lock, the raw
`.dvc` file, versions.jsonl), beside other changes of the user's: the hint names exactly the
first, and `aigc data commit` commits exactly them, with the data version in its message."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from aigc.data.share import commit_data_version, files_to_commit, share_hint
from cli.main import main

TEXT_VERSION = "1a2b3c4d5e6f" + "0" * 20
IMAGE_VERSION = "9f8e7d6c5b4a" + "1" * 20


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(autouse=True)
def own_git_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config (signing, hooks): who commits is set per repository."""
    (tmp_path / "gitconfig").write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "gitconfig"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def make_project(root: Path) -> Path:
    """A committed project (dvc.yaml, a README) in a git repository at `root`."""
    root.mkdir(parents=True, exist_ok=True)
    git(root, "init", "-q")
    git(root, "config", "user.name", "Tester")
    git(root, "config", "user.email", "tester@example.com")
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "README.md").write_text("a project\n")
    git(root, "add", "dvc.yaml", "README.md")
    git(root, "commit", "-q", "-m", "a project")
    return root


def write_version(root: Path, modality_folder: str, stage: str, version: str) -> None:
    """What the data flow writes for one modality's new version: dvc.lock's label output,
    the raw folder's .dvc file and a line of versions.jsonl."""
    lock_file = root / "dvc.lock"
    lock = yaml.safe_load(lock_file.read_text()) if lock_file.exists() else {"schema": "2.0"}
    outs = [{"path": f"{modality_folder}/labeled", "md5": f"{version}.dir"}]
    lock.setdefault("stages", {})[stage] = {"outs": outs}
    lock_file.write_text(yaml.safe_dump(lock))
    (root / modality_folder).mkdir(parents=True, exist_ok=True)
    (root / modality_folder / "raw.dvc").write_text(f"outs:\n- md5: {version[::-1]}.dir\n")
    with (root / modality_folder / "versions.jsonl").open("a") as history:
        history.write(json.dumps({"version": version}) + "\n")


def aigc(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    """`aigc ARGS` in process: its exit code and the lines it printed."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    captured = capsys.readouterr()
    return exited.value.code or 0, (captured.out + captured.err).strip().splitlines()


def test_data_commit_commits_exactly_the_changed_version_files(tmp_path, monkeypatch, capsys):
    root = make_project(tmp_path / "project")
    write_version(root, "data", "label", TEXT_VERSION)
    (root / "README.md").write_text("the user's own edit, not committed\n")
    (root / "notes.txt").write_text("the user's own staged file, not committed\n")
    git(root, "add", "notes.txt")
    text_files = ["dvc.lock", "data/raw.dvc", "data/versions.jsonl"]
    assert files_to_commit(root) == [Path(name) for name in text_files]
    assert share_hint(root) == (
        "to share the data version with a clone, commit dvc.lock, data/raw.dvc, "
        "data/versions.jsonl to git: `aigc data commit` commits exactly these files"
    )

    monkeypatch.chdir(root)
    code, lines = aigc(capsys, "data", "commit")
    assert code == 0, lines
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == sorted(text_files)
    assert git(root, "log", "-1", "--format=%s").strip() == "Data version text 1a2b3c4d5e6f"
    assert TEXT_VERSION in git(root, "log", "-1", "--format=%b")
    commit = git(root, "rev-parse", "HEAD")[:12]
    named = ", ".join(text_files)
    assert lines == [f"committed {named} as {commit}: Data version text 1a2b3c4d5e6f"]
    assert git(root, "status", "--porcelain").splitlines() == [" M README.md", "A  notes.txt"]
    assert share_hint(root) is None

    code, lines = aigc(capsys, "data", "commit")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: nothing to commit: dvc.lock, data/raw.dvc"), lines

    # An image version next: dvc.lock and the image files, named by the image version alone.
    write_version(root, "data/image", "image_label", IMAGE_VERSION)
    image_files = ["dvc.lock", "data/image/raw.dvc", "data/image/versions.jsonl"]
    assert files_to_commit(root) == [Path(name) for name in image_files]
    made = commit_data_version(root)
    assert made.subject == "Data version image 9f8e7d6c5b4a"
    assert git(root, "show", "--name-only", "--format=", "HEAD").split() == sorted(image_files)


def test_a_project_in_a_folder_of_a_repository_commits_its_own_files(tmp_path):
    repository = make_project(tmp_path / "repository")
    root = repository / "projects" / "one"
    root.mkdir(parents=True)
    write_version(root, "data", "label", TEXT_VERSION)
    write_version(repository, "data", "label", IMAGE_VERSION)  # the top's own: not root's
    text_files = ["dvc.lock", "data/raw.dvc", "data/versions.jsonl"]
    assert files_to_commit(root) == [Path(name) for name in text_files]
    commit_data_version(root)
    committed = git(repository, "show", "--name-only", "--format=", "HEAD").split()
    assert committed == sorted(f"projects/one/{name}" for name in text_files)


def test_outside_git_data_commit_says_so_in_one_line_and_the_hint_is_silent(
    tmp_path, monkeypatch, capsys
):
    root = tmp_path / "not-in-git"
    root.mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    write_version(root, "data", "label", TEXT_VERSION)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # no repository above it
    assert share_hint(root) is None
    monkeypatch.chdir(root)
    code, lines = aigc(capsys, "data", "commit")
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {root} is not in a git repository"), lines
    assert "git init" in lines[0]
