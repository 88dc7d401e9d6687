"""The `version` stage: DVC gives every dataset a content hash; the labeled one is the version.

Each modality has its own raw folder, label stage, labeled output and history (its
`DataLayout`, aigc.paths), so a text and an image data version are recorded side by side;
every function below takes the layout.

aigc drives DVC through its Python API (`dvc.repo.Repo`) for the calls every run makes (add,
repro, status, push, pull): a `python -m dvc` process costs about half a second to start,
and a run makes several. Rare set-up calls (init, config, remote) use DVC's command line. The
pieces:
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

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml

from aigc.errors import UserError
from aigc.paths import DataLayout, ProjectPaths
from aigc.settings import OFFLINE_ENVIRONMENT


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
    from dvc.repo import Repo  # in process: three `dvc` processes took 1.2 s

    if not (root / ".dvc").is_dir():
        banner = logging.getLogger("dvc.repo.init")  # "Initialized DVC repository ..."
        level, banner.level = banner.level, logging.WARNING
        try:
            Repo.init(str(root)).close()
        finally:
            banner.setLevel(level)
    with (
        _IN_PROCESS,
        contextlib.chdir(root),
        Repo(str(root)) as repo,
        repo.config.edit("repo") as config,
    ):
        config.setdefault("core", {}).update(analytics=False, check_update=False)


_IN_PROCESS = threading.Lock()


@contextmanager
def _repo(root: Path, doing: str) -> Iterator:
    """DVC's `Repo` on `root`; a DVC failure becomes a DvcError with DVC's own reason."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    # Stage commands (`aigc data clean …`) run in subprocesses that must find this venv's
    # `aigc`, and DVC reads its analytics switch from the environment.
    scripts = str(Path(sys.executable).parent)
    if scripts not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = scripts + os.pathsep + os.environ.get("PATH", "")
    for key, value in OFFLINE_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    # DVC resolves stage paths against the working directory, so the API is only right when
    # run from the project's root: change into it for the call (process-wide, hence the lock).
    # DVC's command line prints what it did; in process it logs it at INFO instead, which the
    # tasks already report in their own words ("Running stage ..."), so only warnings pass.
    dvc_logger = logging.getLogger("dvc")
    level = dvc_logger.level
    try:
        with _IN_PROCESS, contextlib.chdir(root), Repo(str(root)) as repo:
            dvc_logger.setLevel(logging.WARNING)
            repo.scm_context.quiet = True  # no "To track the changes with git, run: ..."
            yield repo
    except DvcException as error:
        raise DvcError(f"`dvc {doing}` failed in {root}: {_reason(error)}") from error
    except UserError:
        raise
    except Exception as error:
        # What DVC's command line prints for an error from below it (it catches them all): an
        # unreachable remote (botocore's EndpointConnectionError), a full disk, a bad key.
        reason = f"{type(error).__name__}: {_reason(error)}"
        raise DvcError(f"`dvc {doing}` failed in {root}: {reason}") from error
    finally:
        dvc_logger.setLevel(level)


def _reason(error: BaseException) -> str:
    """The error and every cause under it, as DVC's command line would print them."""
    words: list[str] = []
    cause: BaseException | None = error
    while cause is not None:
        text = str(cause).strip()
        if text and text not in words:
            words.append(text)
        cause = cause.__cause__ or cause.__context__
    return ": ".join(words)[-4000:] or type(error).__name__


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


def track_raw(root: Path, data: DataLayout) -> str:
    """`dvc add data/raw` (the modality's raw folder); returns its DVC hash. What a
    collection that died while writing left there is deleted first, never versioned."""
    from aigc.data.snapshots import remove_partial_snapshots

    remove_partial_snapshots(Path(root) / data.raw)
    with _repo(root, f"add {data.raw}") as repo:
        repo.add(data.raw)
    entry = yaml.safe_load((Path(root) / f"{data.raw}.dvc").read_text())["outs"][0]
    return entry["md5"].removesuffix(".dir")


def repro(root: Path, stage: str) -> list[str]:
    """`dvc repro STAGE`; returns lines saying which stages ran, or that none had to."""
    with _repo(root, f"repro {stage}") as repo:
        ran = repo.reproduce(targets=[stage])
    if not ran:
        return [f"Stage '{stage}' and its dependencies didn't change, skipping"]
    return [f"Running stage '{ran_stage.addressing}'" for ran_stage in ran]


def status(root: Path) -> dict:
    """`dvc status`: an empty dict means everything is up to date."""
    with _repo(root, "status") as repo:
        return repo.status()


def push(root: Path, remote: str | None = None, targets: list[str] | None = None) -> None:
    """`dvc push` of everything, or only of `targets` (.dvc files, stage names); a failure
    names the remote and its URL, with DVC's own reason. What was not pushed stays in the
    cache, and the next push sends it."""
    doing = (
        "push"
        + (f" --remote {remote}" if remote else "")
        + "".join(f" {target}" for target in targets or [])
    )
    try:
        with _repo(root, doing) as repo:
            repo.push(targets=targets or None, remote=remote)
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


def current_version(root: Path, data: DataLayout) -> str:
    return locked_out_hash(root, data.label_stage, data.labeled)


def history(root: Path, data: DataLayout) -> list[DataVersion]:
    path = Path(root) / data.versions
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [DataVersion(**json.loads(line)) for line in lines if line.strip()]


def record_version(
    root: Path, raw_snapshot: str, counts: dict, data: DataLayout
) -> tuple[DataVersion, bool]:
    """Append the current labeled dataset to the history unless it is already there."""
    version = current_version(root, data)
    for known in history(root, data):
        if known.version == version:
            return known, False
    entry = DataVersion(
        version=version,
        created_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        raw_snapshot=raw_snapshot,
        counts=counts,
    )
    path = Path(root) / data.versions
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(vars(entry), sort_keys=True) + "\n")
    return entry, True


def resolve_version(root: Path, version: str, data: DataLayout) -> str:
    """A full hash from a full hash or a unique prefix of one in the history."""
    version = version.strip().lower().removesuffix(".dir")
    if len(version) == 32 and all(char in "0123456789abcdef" for char in version):
        return version
    matches = {known.version for known in history(root, data) if known.version.startswith(version)}
    if len(matches) == 1:
        return matches.pop()
    if not matches:
        raise VersionNotFound(
            f"no data version starts with {version!r} in {(Path(root) / data.versions)}; "
            "run `aigc data status` for the known versions, or pass the full 32-digit hash"
        )
    raise VersionNotFound(f"{version!r} is ambiguous: {sorted(matches)}; give more digits")


def checkout_version(
    root: Path,
    version: str,
    dest: Path,
    data: DataLayout,
    remote: str | None = None,
) -> Path:
    """Restore the labeled dataset with hash `version` into `dest` (replaced whole), from the
    DVC cache, else from `remote` (the default remote when None)."""
    full = resolve_version(root, version, data)
    scratch = root / f".aigc-checkout-{uuid.uuid4().hex[:8]}"
    scratch.mkdir()
    try:
        # A throw-away .dvc file naming the hash lets DVC fetch (cache, else remote) and link.
        (scratch / "dataset.dvc").write_text(
            yaml.safe_dump({"outs": [{"md5": f"{full}.dir", "hash": "md5", "path": "dataset"}]})
        )
        reason = ""
        try:
            with _repo(root, "pull" + (f" --remote {remote}" if remote else "")) as repo:
                repo.pull(targets=[str(scratch.relative_to(root) / "dataset.dvc")], remote=remote)
        except DvcError as error:
            reason = str(error)
        restored = scratch / "dataset"
        if reason or not restored.is_dir():
            where = f"remote {remote!r}" if remote else "the default remote"
            raise VersionNotFound(
                f"data version {full} is neither in the DVC cache nor on {where} "
                f"({remotes(root).get(remote or '', 'see .dvc/config')}); DVC says:\n"
                f"{reason.strip()[-800:] or 'nothing: it restored no files'}\n"
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
