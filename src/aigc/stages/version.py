"""The `version` stage: the labeled dataset's DVC hash is the data version; push and record it.

    dataset = version(paths, params, modality, collected.snapshot.path.name, labeled.counts)
    dataset = current_dataset(paths, modality)   # its labeled folder, checked against dvc.lock
    dataset.split("train")                       # a DataFrame, for text and images alike

`Dataset` is what training and evaluation take: a folder, the version it is and the modality
whose data it is.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aigc import timing
from aigc.config import Params
from aigc.data.records import SPLITS
from aigc.data.version import (
    VersionNotFound,
    configure_remote,
    current_version,
    history,
    push,
    record_version,
    status,
)
from aigc.errors import UserError
from aigc.modality import Modality, data_of
from aigc.paths import DataLayout, ProjectPaths


@dataclass(frozen=True)
class Dataset:
    """A labeled dataset on disk: {train,validation,test}.parquet, the data version it is and
    the modality whose data it is (text's documents, images' PNGs)."""

    path: Path
    version: str
    modality: str
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
    dataset: Dataset
    new: bool
    remote: str  # where it was pushed; empty when push is off


def version(
    paths: ProjectPaths, params: Params, modality: Modality, raw_snapshot: str, counts: dict
) -> VersionOutcome:
    """Push the modality's raw snapshots, clean records and labeled dataset to the `version`
    section's remote (when it and the modality's own section say push), and record its
    data version."""
    layout = data_of(modality)
    remote = ""
    with timing.timed("version"):
        if params.version.push and modality.data_section(params).version.push:
            remote = configure_remote(
                paths.root, params.version.remote_name, params.version.remote_url
            )
            targets = [f"{layout.raw}.dvc", layout.clean_stage, layout.label_stage]
            push(paths.root, params.version.remote_name, targets)
        entry, new = record_version(paths.root, raw_snapshot, counts, layout)
    dataset = Dataset(paths.data(layout).labeled, entry.version, modality.name, counts)
    return VersionOutcome(dataset, new, remote)


@dataclass(frozen=True)
class DataVersions:
    """What the data flow returns: the data version of each modality it refreshed."""

    by_modality: dict[str, Dataset]

    def of(self, modality: str) -> Dataset:
        if modality not in self.by_modality:
            raise ValueError(f"the data flow did not refresh the {modality} data")
        return self.by_modality[modality]

    def items(self):
        return self.by_modality.items()


class DatasetMismatch(UserError):
    """A labeled folder is not the data version dvc.lock names, so it cannot be trained on."""


def current_dataset(paths: ProjectPaths, modality: Modality) -> Dataset:
    """The modality's labeled folder, checked against dvc.lock so the version it claims is
    the truth."""
    layout = data_of(modality)
    stale = status(paths.root)
    if layout.label_stage in stale:
        raise DatasetMismatch(_mismatch(paths, layout, stale[layout.label_stage]))
    labeled = paths.data(layout).labeled
    return Dataset(labeled, current_version(paths.root, layout), modality.name)


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


def _mismatch(paths: ProjectPaths, layout: DataLayout, changes: list) -> str:
    """Why the label stage is out of date, and what to run: which version data/labeled holds
    and which one dvc.lock names, when an output changed; the changed inputs otherwise."""
    folder = paths.data(layout).labeled
    labeled = folder.relative_to(paths.root)
    try:
        locked = current_version(paths.root, layout)
    except VersionNotFound as error:
        return f"{labeled} has no data version yet ({error}); build one with `aigc data refresh`"
    outputs_changed = any(
        isinstance(change, dict) and "changed outs" in change for change in changes
    )
    if not outputs_changed:
        return (
            f"the {layout.label_stage} stage's inputs changed since dvc.lock recorded data "
            f"version {locked[:12]} ({changes}), so {labeled} is out of date: rebuild it "
            "with `aigc data refresh`"
        )
    restore = (
        f"`aigc data checkout {locked[:12]} --modality {layout.name}` (or `dvc checkout "
        f"{labeled}`) restores the version "
        "dvc.lock names; `aigc data refresh` builds a new one from the sources"
    )
    if not folder.is_dir():
        return f"{labeled} is missing; dvc.lock names data version {locked[:12]}. Fix: {restore}"
    held = folder_version(folder)
    known = {entry.version for entry in history(paths.root, layout)}
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
