"""Where a project keeps its data: one place for the paths that dvc.yaml also names.

Every path is relative to the project root (the directory holding dvc.yaml and
params.yaml), so the same code serves the repository and any temporary test project.
A command that works on a project first checks that it is in one (`require_project`) and,
if it writes, that it may (`require_writable`), so that neither mistake writes anything;
`NotWritable.of(error)` turns an OSError of writing (a read-only folder, a full disk, the
file-size limit) into one message naming the path and the fix.
"""

from __future__ import annotations

import errno
import os
import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path

from aigc.errors import UserError

MAKE_WRITABLE = "make it writable (`chmod -R u+w {folder}`) or run aigc in a copy you may write"
# Causes of a failed write that lie in the machine, not in aigc: each with its fix.
WRITE_FIXES = {
    errno.EACCES: MAKE_WRITABLE,
    errno.EPERM: MAKE_WRITABLE,
    errno.EROFS: "its file system is read-only: copy the project to a writable disk",
    errno.ENOSPC: "free space on its disk and run again",
    errno.EDQUOT: "free space within your disk quota and run again",
    errno.EFBIG: "raise the file-size limit (`ulimit -f unlimited`) and run again",
}


class NotAProject(UserError):
    """A command that works on a project was run in a folder that holds none."""


class NotWritable(UserError):
    """aigc could not write a file or folder, for a reason of the machine's."""

    def __init__(self, path: Path | str | None, error: OSError) -> None:
        """`path`: what could not be written; None when the error does not say (a failed
        write to an open file)."""
        if path is None:
            what, folder = "cannot write", "the project"
        else:
            what = f"cannot write {path}"
            folder = str(Path(path) if Path(path).is_dir() else Path(path).parent)
        reason = error.strerror or os.strerror(error.errno or 0)
        if error.errno == errno.EFBIG:
            limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
            reason += f" (the file-size limit is {limit} bytes)"
        fix = WRITE_FIXES.get(error.errno or 0, "check that aigc may write there")
        super().__init__(f"{what}: {reason}. Fix: {fix.format(folder=folder)}")

    @classmethod
    def of(cls, error: BaseException) -> NotWritable | None:
        """The NotWritable an OSError of writing stands for; None for any other error, which
        is then a bug of aigc and keeps its traceback."""
        if not isinstance(error, OSError) or error.errno not in WRITE_FIXES:
            return None
        return cls(error.filename, error)


def require_writable(*folders: Path) -> None:
    """NotWritable naming the first of `folders` (or, for one that does not exist yet, the
    folder it would be made in) where aigc cannot create a file. The probe file is gone at
    once; nothing else is written."""
    for folder in folders:
        existing = Path(folder)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        try:
            with tempfile.TemporaryFile(dir=existing):
                pass
        except OSError as error:
            raise NotWritable(existing, error) from None


@dataclass(frozen=True)
class DataLayout:
    """Where one modality keeps its data, relative to the project root: the one definition of
    its folders (the DVC stages in dvc.yaml name the same ones).

        folder/raw/             snapshots, `dvc add`ed (folder/raw.dvc)
        folder/clean/           records.parquet, quarantine.parquet: DVC stage `clean_stage`
        folder/labeled/         {train,validation,test}.parquet: the data version, `label_stage`
        folder/reports/         clean.json, label.json and their headline metrics
        folder/versions.jsonl   the history of its data versions
    """

    name: str  # the modality's
    folder: str  # "data" (text), "data/image"
    clean_stage: str
    label_stage: str

    @property
    def raw(self) -> str:
        return f"{self.folder}/raw"

    @property
    def labeled(self) -> str:
        return f"{self.folder}/labeled"

    @property
    def versions(self) -> str:
        return f"{self.folder}/versions.jsonl"

    def under(self, root: Path) -> DataPaths:
        base = Path(root) / self.folder
        return DataPaths(
            root=Path(root),
            raw=base / "raw",
            clean=base / "clean",
            labeled=base / "labeled",
            reports=base / "reports",
            versions=base / "versions.jsonl",
        )


@dataclass(frozen=True)
class DataPaths:
    """A modality's data folders in one project (`DataLayout.under(root)`)."""

    root: Path
    raw: Path
    clean: Path
    labeled: Path
    reports: Path
    versions: Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @classmethod
    def at(cls, root: Path | str = ".") -> ProjectPaths:
        return cls(Path(root).resolve())

    @property
    def is_project(self) -> bool:
        """Whether the root is a project: it holds params.yaml or dvc.yaml."""
        return self.params.is_file() or (self.root / "dvc.yaml").is_file()

    def require_project(self) -> ProjectPaths:
        """These paths, if the root is a project; else NotAProject, so that a command run in
        the wrong folder creates nothing there."""
        if not self.is_project:
            raise NotAProject(
                f"{self.root} is not an aigc project: it has no params.yaml or dvc.yaml. "
                "Fix: cd into the project's folder, or start a project here with a params.yaml "
                "(`aigc params > params.yaml` writes every default)"
            )
        return self

    def require_writable(self) -> None:
        """NotWritable unless aigc can write in the project, its scratch space and data/."""
        require_writable(self.root, self.work, self.root / "data")

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def effective_params(self) -> Path:
        """The run's whole configuration (params.yaml + overrides + defaults), git-ignored."""
        return self.root / "params.effective.yaml"

    def data(self, layout: DataLayout) -> DataPaths:
        """A modality's data folders in this project."""
        return layout.under(self.root)

    @property
    def dvc_lock(self) -> Path:
        return self.root / "dvc.lock"

    def evaluation(self, run_id: str) -> Path:
        """Where a run's evaluation (metrics + per-document scores) is kept for decisions."""
        return self.work / "evaluations" / run_id

    @property
    def work(self) -> Path:
        """Scratch space of aigc itself (git-ignored)."""
        return self.root / ".aigc"
