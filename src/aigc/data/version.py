"""The `version` stage: DVC gives every dataset a content hash; the labeled one is the version.

aigc drives DVC through its command line (`python -m dvc …`), the interface DVC documents
and keeps stable. The pieces:
- `init_project(root)`: a git + DVC repository with analytics and update checks off.
- `track_raw(root)`: `dvc add data/raw` after a collection (raw snapshots are inputs, not
  stages: collecting again must never be part of `dvc repro`).
- `repro(root, stage)`: `dvc repro STAGE`; DVC's run cache skips a stage whose deps, params
  and code are unchanged.
- `record_version(root, ...)`: reads the labeled dataset's hash from dvc.lock, pushes to
  the remote and appends the version to data/versions.jsonl (the history `aigc data status`
  prints).
- `checkout_version(root, version, dest)`: restores exactly that dataset from the DVC cache,
  or from the remote in any clone that can reach it, by its hash alone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from aigc.errors import UserError
from aigc.paths import ProjectPaths
from aigc.settings import OFFLINE_ENVIRONMENT

LABEL_STAGE = "label"


class DvcError(UserError):
    """A DVC command failed; the message holds the command and DVC's own words."""


class VersionNotFound(UserError):
    pass


@dataclass(frozen=True)
class DataVersion:
    version: str  # the labeled dataset's DVC md5 (a directory hash), 32 hex digits
    created_at: str
    raw_snapshot: str
    counts: dict

    @property
    def short(self) -> str:
        return self.version[:12]


def dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `dvc ARGS` in `root` with the project's offline environment."""
    environment = {**os.environ, **OFFLINE_ENVIRONMENT}
    scripts = str(Path(sys.executable).parent)  # so stage commands find `aigc` in this venv
    environment["PATH"] = scripts + os.pathsep + environment.get("PATH", "")
    command = [sys.executable, "-m", "dvc", *args]
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True)
    if check and result.returncode != 0:
        words = (result.stderr.strip() or result.stdout.strip())[-4000:]
        raise DvcError(f"`dvc {' '.join(args)}` failed in {root}:\n{words}")
    return result


def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)


def init_project(root: Path) -> None:
    """Make `root` a git + DVC repository (idempotent), with DVC's phoning home off."""
    root.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["git", "rev-parse"], cwd=root, capture_output=True).returncode != 0:
        git(root, "init", "-q")
    if not (root / ".dvc").is_dir():
        dvc(root, "init", "-q")
    dvc(root, "config", "core.analytics", "false")
    dvc(root, "config", "core.check_update", "false")


def configure_remote(root: Path, name: str, url: str) -> str:
    """Make `name` the DVC remote at `url` (a path relative to the project, or a URL).

    The committed .dvc/config names the project's remotes (`storage`, a folder beside the
    project; `stack`, the stack's bucket), so a clone has them. Only a remote that config
    lacks, or names elsewhere, is written, to the git-ignored .dvc/config.local (a folder as a
    relative path, which DVC keeps relative). An S3 remote's endpoint and key come from the
    environment (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID, ...), never from a file."""
    location = url if is_url(url) else str((root / url).resolve())
    config = _dvc_config(root)
    configured = config.get(f"remote.{name}.url", "")
    if configured and not is_url(configured):
        configured = str(Path(configured).resolve())  # DVC lists folders as absolute paths
    if configured != location:
        if not is_url(url):
            Path(location).mkdir(parents=True, exist_ok=True)
        # A relative folder is taken from the working directory (root) and written relative
        # to the config file.
        wanted = url if is_url(url) else os.path.relpath(location, root)
        dvc(root, "remote", "add", "--local", "--force", name, wanted)
    if config.get("core.remote") != name:
        dvc(root, "remote", "default", "--local", name)  # so a plain `dvc pull` uses it too
    return location


def remotes(root: Path) -> dict[str, str]:
    """The DVC remotes configured for `root` (every config level): {name: url}."""
    return {
        key.removeprefix("remote.").removesuffix(".url"): value
        for key, value in _dvc_config(root).items()
        if key.startswith("remote.") and key.endswith(".url")
    }


def _dvc_config(root: Path) -> dict[str, str]:
    """`dvc config --list`, every level, the later (local) winning; folders made absolute."""
    lines = dvc(root, "config", "--list").stdout.splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


def is_url(location: str) -> bool:
    return "://" in location


def track_raw(root: Path) -> str:
    """`dvc add data/raw`; returns the raw directory's DVC hash."""
    dvc(root, "add", "data/raw")
    entry = yaml.safe_load((root / "data" / "raw.dvc").read_text())["outs"][0]
    return entry["md5"].removesuffix(".dir")


def repro(root: Path, stage: str) -> list[str]:
    """`dvc repro STAGE`; returns DVC's lines saying which stages ran or were skipped."""
    output = dvc(root, "repro", stage).stdout
    keep = ("Running stage", "Stage '", "Updating lock file", "Skipping")
    return [line.strip() for line in output.splitlines() if line.strip().startswith(keep)]


def status(root: Path) -> dict:
    """`dvc status --json`: an empty dict means everything is up to date."""
    return json.loads(dvc(root, "status", "--json").stdout or "{}")


def push(root: Path, remote: str | None = None) -> None:
    """`dvc push`; a failure names the remote and its URL, with DVC's own reason. What was
    not pushed stays in the cache, and the next push sends it."""
    try:
        dvc(root, "push", *(["--remote", remote] if remote else []))
    except DvcError as error:
        url = remotes(root).get(remote or "", "the default remote")
        raise DvcError(
            f"could not push the data to DVC remote {remote!r} ({url}); it stays in the DVC "
            "cache and the next run pushes it. Check that the remote is reachable (its "
            f"endpoint and key come from the environment). {error}"
        ) from None


def locked_out_hash(root: Path, stage: str, out_path: str) -> str:
    """The md5 dvc.lock records for one output of a stage."""
    lock_file = ProjectPaths.at(root).dvc_lock
    if not lock_file.exists():
        raise VersionNotFound(f"{lock_file} does not exist: run the data flow first")
    lock = yaml.safe_load(lock_file.read_text())
    for out in lock.get("stages", {}).get(stage, {}).get("outs", []):
        if out["path"] == out_path:
            return out["md5"].removesuffix(".dir")
    raise VersionNotFound(f"dvc.lock has no output {out_path!r} for stage {stage!r}")


def current_version(root: Path) -> str:
    return locked_out_hash(root, LABEL_STAGE, "data/labeled")


def history(root: Path) -> list[DataVersion]:
    path = ProjectPaths.at(root).versions
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [DataVersion(**json.loads(line)) for line in lines if line.strip()]


def record_version(root: Path, raw_snapshot: str, counts: dict) -> tuple[DataVersion, bool]:
    """Append the current labeled dataset to the history unless it is already there."""
    version = current_version(root)
    for known in history(root):
        if known.version == version:
            return known, False
    entry = DataVersion(
        version=version,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        raw_snapshot=raw_snapshot,
        counts=counts,
    )
    path = ProjectPaths.at(root).versions
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(vars(entry), sort_keys=True) + "\n")
    return entry, True


def resolve_version(root: Path, version: str) -> str:
    """A full hash from a full hash or a unique prefix of one in the history."""
    version = version.strip().lower().removesuffix(".dir")
    if len(version) == 32 and all(char in "0123456789abcdef" for char in version):
        return version
    matches = {known.version for known in history(root) if known.version.startswith(version)}
    if len(matches) == 1:
        return matches.pop()
    if not matches:
        raise VersionNotFound(
            f"no data version starts with {version!r} in {ProjectPaths.at(root).versions}; "
            "run `aigc data status` for the known versions, or pass the full 32-digit hash"
        )
    raise VersionNotFound(f"{version!r} is ambiguous: {sorted(matches)}; give more digits")


def checkout_version(root: Path, version: str, dest: Path, remote: str | None = None) -> Path:
    """Restore the labeled dataset with hash `version` into `dest` (replaced whole), from the
    DVC cache, else from `remote` (the default remote when None)."""
    full = resolve_version(root, version)
    scratch = root / f".aigc-checkout-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        # A throw-away .dvc file naming the hash lets DVC fetch (cache, else remote) and link.
        (scratch / "dataset.dvc").write_text(
            yaml.safe_dump({"outs": [{"md5": f"{full}.dir", "hash": "md5", "path": "dataset"}]})
        )
        chosen = ["--remote", remote] if remote else []
        result = dvc(root, "pull", *chosen, str(scratch / "dataset.dvc"), check=False)
        restored = scratch / "dataset"
        if result.returncode != 0 or not restored.is_dir():
            words = "\n".join(part.strip() for part in (result.stderr, result.stdout) if part)
            where = f"remote {remote!r}" if remote else "the default remote"
            raise VersionNotFound(
                f"data version {full} is neither in the DVC cache nor on {where} "
                f"({remotes(root).get(remote or '', 'see .dvc/config')}); DVC says:\n"
                f"{words.strip()[-800:] or f'nothing (exit status {result.returncode})'}\n"
                "Check the remote (`version.remote_name`/`version.remote_url` in params.yaml, "
                "its endpoint and key in the environment) and that this version was pushed."
            )
        if dest.exists():
            shutil.rmtree(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(restored), str(dest))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return dest
