"""A data version that travels with git: the few files that name it, committed alone.

    changed = files_to_commit(root)     # [Path("dvc.lock"), Path("data/versions.jsonl"), …]
    print(share_hint(root))             # what to commit, or None when git has it already
    commit = commit_data_version(root)  # `git add` + `git commit` of exactly those files

The data itself lives in DVC (the cache and the remote); what names a version lives in
files that git must carry: dvc.lock (the hash of each stage's outputs, the labeled
dataset's hash being the data version), each modality's raw `.dvc` file (the snapshots it
was built from) and its versions.jsonl (the history `aigc data status` prints). A clone
with a commit of them can `dvc pull` or `aigc reproduce` that version; one without cannot.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from aigc.data.version import current_version
from aigc.errors import UserError
from aigc.modality import get_modality, modality_names
from aigc.paths import DataLayout

SHARED_BY_ALL = "dvc.lock"  # every modality's stages lock their outputs there


def layouts() -> list[DataLayout]:
    """The data of every modality that has data stages, in pipeline order."""
    chosen = (get_modality(name).data for name in modality_names())
    return [layout for layout in chosen if layout is not None]


def own_files(data: DataLayout) -> tuple[str, ...]:
    """The files that name a modality's data version, besides dvc.lock."""
    return (f"{data.raw}.dvc", data.versions)


def data_version_files() -> tuple[str, ...]:
    return (SHARED_BY_ALL, *(name for data in layouts() for name in own_files(data)))


@dataclass(frozen=True)
class DataCommit:
    commit: str  # the new commit's hash
    files: list[Path]  # relative to the project root
    subject: str  # the message's first line, naming the data versions


def files_to_commit(root: Path) -> list[Path]:
    """The files of `data_version_files()` that differ from git's HEAD (changed, new or
    deleted), relative to `root`; a UserError when `root` is in no git repository."""
    prefix = _git(root, "rev-parse", "--show-prefix").stdout.strip()  # root inside the repo
    names = data_version_files()
    listed = _git(root, "status", "--porcelain", "-z", "--", *names).stdout
    # "XY path\0" per file, relative to the repository's top; a rename or copy adds "old\0"
    entries, changed = iter(listed.split("\0")), set()
    for entry in entries:
        if len(entry) > 3:
            changed.add(entry[3:])
            if entry[0] in "RC":
                next(entries, None)
    return [Path(name) for name in names if prefix + name in changed]


def share_hint(root: Path) -> str | None:
    """The sentence that says what to commit to share the data versions; None when git's
    HEAD has them already, or `root` is in no git repository."""
    try:
        changed = files_to_commit(root)
    except UserError:
        return None
    if not changed:
        return None
    names = ", ".join(str(path) for path in changed)
    return (
        f"to share the data version with a clone, commit {names} to git: `aigc data commit` "
        "commits exactly these files"
    )


def commit_data_version(root: Path) -> DataCommit:
    """`git add` and `git commit` exactly the files that name the data versions and differ
    from HEAD, with a message naming the versions. Whatever else is changed or staged is
    left as it is. A UserError when `root` is in no git repository or nothing differs."""
    files = files_to_commit(root)
    if not files:
        raise UserError(
            f"nothing to commit: {', '.join(data_version_files())} in {root} are as git's HEAD "
            "has them, so the data versions are committed already (or none was made yet: "
            "`aigc data refresh`)"
        )
    subject, body = _message(root, files)
    names = [str(path) for path in files]
    _git(root, "add", "--", *names)
    # --only: the commit holds these paths alone, even where the user has staged others
    staged = f"{', '.join(names)} are staged; fix that and run `aigc data commit` again"
    _git(root, "commit", "--quiet", "--only", "-m", subject, "-m", body, "--", *names, fix=staged)
    commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    return DataCommit(commit, files, subject)


def _message(root: Path, files: list[Path]) -> tuple[str, str]:
    """("data version text 1a2b3c4d5e6f, image …", one line per version with its full hash):
    the modalities whose own files changed, or every one that has a version when only
    dvc.lock did."""
    names = {str(path) for path in files}
    every = layouts()
    touched = [data for data in every if names & set(own_files(data))] or every
    versions: list[tuple[str, str]] = []
    for kind in touched:
        try:
            versions.append((kind.name, current_version(root, kind)))
        except Exception:  # never versioned (VersionNotFound), or a dvc.lock DVC will refuse
            continue  # the message names what it can read; the files are committed all the same
    subject = "Data version " + ", ".join(f"{name} {version[:12]}" for name, version in versions)
    lines = [f"{name} data version {version}" for name, version in versions]
    lines.append("committed by `aigc data commit`: " + ", ".join(sorted(names)))
    return subject if versions else "Data version files", "\n".join(lines)


def _git(root: Path, *args: str, fix: str = "") -> subprocess.CompletedProcess:
    """`git ARGS` in `root`; a failure is a UserError with git's own words (and `fix`)."""
    try:
        result = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        raise UserError(
            "git is not installed (or not on PATH): install it to share data versions"
        ) from None
    if result.returncode == 0:
        return result
    words = " ".join((result.stderr.strip() or result.stdout.strip()).split())[-600:]
    if "not a git repository" in words:
        raise UserError(
            f"{root} is not in a git repository, so there is nothing to commit the data "
            "version to. Fix: `git init` there (and commit the project) first, or copy "
            "dvc.lock and the data/*.dvc and versions.jsonl files yourself"
        )
    raise UserError(f"`git {args[0]}` failed in {root}: {words}" + (f". {fix}" if fix else ""))
