"""The root of params.yaml: `Params`, one field per section, and `section_hash`, which
leaves out the settings that say only where training runs (PLACEMENT_SETTINGS)."""

from __future__ import annotations

import hashlib
import json

from aigc.config.base import Section
from aigc.config.data import (
    CleanParams,
    CollectParams,
    LabelParams,
    SplitParams,
    VersionParams,
)
from aigc.config.image import ImageParams
from aigc.config.registry import RegistryParams, RunParams, TrackingParams
from aigc.config.train import EvaluateParams, TrainParams


class Params(Section):
    collect: CollectParams = CollectParams()
    clean: CleanParams = CleanParams()
    label: LabelParams = LabelParams()
    split: SplitParams = SplitParams()
    version: VersionParams = VersionParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    tracking: TrackingParams = TrackingParams()
    registry: RegistryParams = RegistryParams()
    run: RunParams = RunParams()
    image: ImageParams = ImageParams()

    def section_hash(self, *sections: str) -> str:
        """A stable hash of the named sections (all when none), for keys and tags.

        Where a run trains (PLACEMENT_SETTINGS) is left out: the same data, code and params
        make the same model on a laptop and on a cluster, and give the same training key."""
        data = self.model_dump(mode="json")
        for section, *path, key in PLACEMENT_SETTINGS:
            data[section] = _without(data[section], [*path, key])
        chosen = {name: data[name] for name in (sections or tuple(sorted(data)))}
        blob = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Settings that say where training runs, not what it computes (out of params hashes).
PLACEMENT_SETTINGS = (
    ("train", "ray", "address"),
    ("train", "ray", "storage_path"),
    ("train", "ray", "max_failures"),
    ("train", "ray", "checkpoints_to_keep"),
)


def _without(data: dict, path: list[str]) -> dict:
    """A copy of nested `data` without the key at `path`."""
    head, *rest = path
    if head not in data:
        return data
    kept = dict(data)
    if rest:
        kept[head] = _without(data[head], rest)
    else:
        del kept[head]
    return kept
