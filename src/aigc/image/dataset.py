"""The labeled image dataset: the file the image label stage writes and training reads.

`data/image/labeled/{train,validation,test}.parquet` (the labeled layout every modality
writes, aigc.stages.label) have one row per image: `id` (the pixel hash), `label` (a class
name), `split`, `png` (the image at the configured size and mode) and `source`.

    splits = read_labeled("data/image/labeled")     # {"train": ImageSplit, "validation", "test"}
    splits["train"].pixels                          # (N, H, W, C) uint8
    splits["train"].classes[splits["train"].labels[0]]

`classes` is the sorted list of every class in the file, the same for every split, and
`labels` index into it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from aigc.data.records import SPLITS  # text's names: train, validation, test
from aigc.errors import UserError

LABELED_COLUMNS = ["id", "label", "split", "png", "source"]


@dataclass(frozen=True, eq=False)
class ImageSplit:
    pixels: np.ndarray  # (N, H, W, C) uint8
    labels: np.ndarray  # (N,) int64, indices into classes
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes → (H, W, C) uint8."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def read_labeled(folder: Path | str) -> dict[str, ImageSplit]:
    """One ImageSplit per split file of the labeled folder (a `Dataset`'s path)."""
    folder = Path(folder)
    paths = {split: folder / f"{split}.parquet" for split in SPLITS}
    for path in paths.values():
        if not path.is_file():
            raise UserError(f"{path} does not exist: run `aigc data refresh` first")
    frames = {
        split: pd.read_parquet(path, columns=LABELED_COLUMNS) for split, path in paths.items()
    }
    classes = sorted(set().union(*(frame["label"].astype(str) for frame in frames.values())))
    return {split: _split(frame, classes) for split, frame in frames.items()}


def _split(frame: pd.DataFrame, classes: list[str]) -> ImageSplit:
    index = {name: position for position, name in enumerate(classes)}
    images = [decode_png(data) for data in frame["png"]]
    shape = images[0].shape if images else (0, 0, 1)
    pixels = np.stack(images) if images else np.zeros((0, *shape), np.uint8)  # (N, H, W, C)
    labels = frame["label"].astype(str).map(index).to_numpy(np.int64, copy=True)
    return ImageSplit(pixels, labels, list(classes))
