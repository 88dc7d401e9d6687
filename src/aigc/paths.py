"""Where a project keeps its data: one place for the paths that dvc.yaml also names.

Every path is relative to the project root (the directory holding dvc.yaml and
params.yaml), so the same code serves the repository and any temporary test project.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ProjectPaths:
    root: Path

    @classmethod
    def at(cls, root: Path | str = ".") -> ProjectPaths:
        return cls(Path(root).resolve())

    @property
    def params(self) -> Path:
        return self.root / "params.yaml"

    @property
    def effective_params(self) -> Path:
        """The run's whole configuration (params.yaml + overrides + defaults), git-ignored."""
        return self.root / "params.effective.yaml"

    @property
    def raw(self) -> Path:
        return self.root / "data" / "raw"

    @property
    def clean(self) -> Path:
        return self.root / "data" / "clean"

    @property
    def labeled(self) -> Path:
        return self.root / "data" / "labeled"

    @property
    def reports(self) -> Path:
        return self.root / "data" / "reports"

    @property
    def versions(self) -> Path:
        return self.root / "data" / "versions.jsonl"

    @property
    def image(self) -> Path:
        """The image modality's data: raw/, clean/, labeled/, reports/ and versions.jsonl."""
        return self.root / "data" / "image"

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
