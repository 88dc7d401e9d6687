"""The `version` stage: the labeled dataset's DVC hash is the data version; push and record it.

    dataset = version(paths, params, collected.snapshot.path.name, labeled.counts)
    dataset = current_dataset(paths)     # data/labeled, checked against dvc.lock
    dataset.split("train")               # a DataFrame

`Dataset` is what training and evaluation take: a folder and the version it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from aigc.config import Params
from aigc.data.records import SPLITS
from aigc.data.version import configure_remote, current_version, push, record_version, status
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
    dataset: Dataset
    new: bool
    remote: str  # where it was pushed; empty when push is off


def version(
    paths: ProjectPaths, params: Params, raw_snapshot: str, counts: dict
) -> VersionOutcome:
    remote = ""
    if params.version.push:
        remote = configure_remote(
            paths.root, params.version.remote_name, params.version.remote_url
        )
        push(paths.root, params.version.remote_name)
    entry, new = record_version(paths.root, raw_snapshot, counts)
    return VersionOutcome(Dataset(paths.labeled, entry.version, counts), new, remote)


def current_dataset(paths: ProjectPaths) -> Dataset:
    """data/labeled, checked against dvc.lock so the version it claims is the truth."""
    stale = status(paths.root)
    if any("label" in stage for stage in stale):
        raise UserError(
            f"data/labeled does not match dvc.lock ({stale}); restore it with "
            "`dvc checkout data/labeled` or rebuild it with `aigc data refresh`"
        )
    return Dataset(paths.labeled, current_version(paths.root))
