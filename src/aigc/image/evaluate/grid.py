"""A picture a person reads: a grid of samples, one row per class.

    write_sample_grid(samples, requested, path, per_class=params.grid_per_class,
                      scale=params.grid_scale, gap=params.grid_gap)   # PNG; image.evaluate

An 8×8 digit is a smudge at its real size: tiles are upscaled by nearest neighbour (no
blurring that would flatter a model) and separated by a gap, and rows follow the class order,
row r holding the samples requested for class r.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

GAP_VALUE = 128  # mid grey: visible between white-on-black digits and on photographs


def sample_grid(
    samples: np.ndarray,
    requested: np.ndarray,
    *,
    classes: int,
    per_class: int,
    scale: int,
    gap: int,
) -> np.ndarray:
    """uint8 (rows * (H*scale + gap) + gap, per_class * (W*scale + gap) + gap, C): row r holds
    the first `per_class` samples requested for class r; missing tiles stay grey."""
    _, height, width, channels = samples.shape
    tile_height, tile_width = height * scale + gap, width * scale + gap
    grid = np.full(
        (classes * tile_height + gap, per_class * tile_width + gap, channels),
        GAP_VALUE,
        dtype=np.uint8,
    )
    for row in range(classes):
        for column, index in enumerate(np.flatnonzero(requested == row)[:per_class]):
            tile = samples[index].repeat(scale, axis=0).repeat(scale, axis=1)  # (H*s, W*s, C)
            top, left = gap + row * tile_height, gap + column * tile_width
            grid[top : top + height * scale, left : left + width * scale] = tile
    return grid


def write_sample_grid(
    samples: np.ndarray,
    requested: np.ndarray,
    path: Path,
    *,
    classes: int | None = None,
    per_class: int,
    scale: int,
    gap: int,
) -> Path:
    """Write `sample_grid` as a PNG (greyscale for one channel, RGB for three)."""
    from PIL import Image

    rows = int(np.max(requested)) + 1 if classes is None else classes
    grid = sample_grid(
        samples, np.asarray(requested), classes=rows, per_class=per_class, scale=scale, gap=gap
    )
    picture = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path, format="PNG")
    return path
