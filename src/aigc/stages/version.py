"""The `version` stage: the labeled dataset's DVC hash is the data version; push and record it.

    dataset = version(paths, params, collected.snapshot.path.name, labeled.counts)
    dataset = current_dataset(paths)     # data/labeled, checked against dvc.lock
    dataset.split("train")               # a DataFrame

`Dataset` is what training and evaluation take: a folder and the version it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.data.records import SPLITS
from aigc.data.version import (
    LABEL_STAGE,
    TEXT,
    DataVersion,
    Modality,
    VersionNotFound,
    configure_remote,
    current_version,
    history,
    push,
    record_version,
    status,
)
from aigc.errors import UserError
from aigc.paths import ProjectPaths


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset on disk and the data version it is."""

    path: Path
    version: str
    counts: dict = field(default_factory=dict)

    def split(self, name: str) -> pd.DataFrame:
        path = self.path / f"{name}.parquet"
        if not path.exists():
            raise UserError(f"{path} does not exist: run `aigc data refresh` first")
        return pd.read_parquet(path)

    def splits(self) -> tuple[pd.DataFrame, ...]:
        return tuple(self.split(name) for name in SPLITS)


@dataclass(frozen=True)
class VersionOutcome:
    dataset: Any  # the modality's labeled dataset (text's Dataset, images' ImageDataset)
    new: bool
    remote: str  # where it was pushed; empty when push is off


@timing.timed("version")
def version(
    paths: ProjectPaths, params: Params, raw_snapshot: str, counts: dict
) -> VersionOutcome:
    entry, new, remote = publish(paths, params, raw_snapshot, counts)
    return VersionOutcome(Dataset(paths.labeled, entry.version, counts), new, remote)


def publish(
    paths: ProjectPaths,
    params: Params,
    raw_snapshot: str,
    counts: dict,
    modality: Modality = TEXT,
    push_targets: list[str] | None = None,
    push_wanted: bool = True,
) -> tuple[DataVersion, bool, str]:
    """Push to the `version` section's remote (all, or `push_targets`) and record the
    modality's data version: (the entry, whether it is new, where it was pushed or "")."""
    remote = ""
    if params.version.push and push_wanted:
        remote = configure_remote(
            paths.root, params.version.remote_name, params.version.remote_url
        )
        push(paths.root, params.version.remote_name, push_targets)
    entry, new = record_version(paths.root, raw_snapshot, counts, modality)
    return entry, new, remote


@dataclass(frozen=True)
class DataVersions:
    """What the data flow returns: the data version of each modality it refreshed."""

    by_modality: dict[str, Any]  # name -> its dataset (text's Dataset, images' ImageDataset)

    def of(self, modality: str) -> Any:
        if modality not in self.by_modality:
            raise ValueError(f"the data flow did not refresh the {modality} data")
        return self.by_modality[modality]

    def items(self):
        return self.by_modality.items()


class DatasetMismatch(UserError):
    """data/labeled is not the data version dvc.lock names, so it cannot be trained on."""


def current_dataset(paths: ProjectPaths) -> Dataset:
    """data/labeled, checked against dvc.lock so the version it claims is the truth."""
    stale = status(paths.root)
    if LABEL_STAGE in stale:
        raise DatasetMismatch(_mismatch(paths, stale[LABEL_STAGE]))
    return Dataset(paths.labeled, current_version(paths.root))


def folder_version(folder: Path) -> str:
    """The hash DVC gives `folder`: the md5 of its .dir manifest, the list of {"md5",
    "relpath"} of every file sorted by relpath (what a stage output records in dvc.lock)."""

    def md5(data: bytes) -> str:
        return hashlib.md5(data).hexdigest()  # noqa: S324 (DVC's own content hash)

    manifest = sorted(
        (
            {"md5": md5(path.read_bytes()), "relpath": path.relative_to(folder).as_posix()}
            for path in folder.rglob("*")
            if path.is_file()
        ),
        key=lambda entry: entry["relpath"],
    )
    return md5(json.dumps(manifest, sort_keys=True).encode())


def _mismatch(paths: ProjectPaths, changes: list) -> str:
    """Why the label stage is out of date, and what to run: which version data/labeled holds
    and which one dvc.lock names, when an output changed; the changed inputs otherwise."""
    labeled = paths.labeled.relative_to(paths.root)
    try:
        locked = current_version(paths.root)
    except VersionNotFound as error:
        return f"{labeled} has no data version yet ({error}); build one with `aigc data refresh`"
    outputs_changed = any(
        isinstance(change, dict) and "changed outs" in change for change in changes
    )
    if not outputs_changed:
        return (
            f"the label stage's inputs changed since dvc.lock recorded data version {locked[:12]} "
            f"({changes}), so {labeled} is out of date: rebuild it with `aigc data refresh`"
        )
    restore = (
        f"`aigc data checkout {locked[:12]}` (or `dvc checkout {labeled}`) restores the version "
        "dvc.lock names; `aigc data refresh` builds a new one from the sources"
    )
    if not paths.labeled.is_dir():
        return f"{labeled} is missing; dvc.lock names data version {locked[:12]}. Fix: {restore}"
    held = folder_version(paths.labeled)
    known = {entry.version for entry in history(paths.root)}
    if held in known:
        return (
            f"{labeled} holds data version {held[:12]} (restored by `aigc data checkout`), but "
            f"dvc.lock names data version {locked[:12]}, so training would record the wrong "
            f"version. Fix: {restore}"
        )
    return (
        f"{labeled} was changed since dvc.lock recorded data version {locked[:12]}: it matches "
        f"no recorded data version. Fix: {restore}"
    )
