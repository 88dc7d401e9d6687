"""The image `clean` stage core: raw images in, clean images plus quarantine out, nothing lost.

    result = clean_images(raw, params.image.clean)   # no file I/O; the stage's edges save it
    result.records      # id (pixel hash), png, label, source, source_type, uri, collected_at, meta
    result.quarantine   # the raw record (its original bytes) + rule, detail, duplicate_of
    result.report       # counts per rule and label, the params used (JSON-ready, deterministic)

Every raw record ends up in exactly one of the two frames (`check_accounting`, shared with
text, proves it). Rows are visited in (collected_at, source, uri) order, so the first of a
group of duplicates is the one kept and reruns are byte-identical. The rules, in order:

1. flagged             the source flagged the record (CIFAR-10: truncated, bad_label).
2. decompression_bomb  more than `max_pixels` pixels, found from the header before decoding
                       (Pillow's own DecompressionBombWarning/Error at that limit).
3. undecodable         not an image Pillow can open or decode.
4. truncated           the file ends before the image does.
5. wrong_mode          not convertible to `mode` (or `convert_mode: false` and another mode).
6. wrong_size          not `size` after the `resize` policy (`never`: any other size).
7. exact_duplicate     the same pixels (mode, size and bytes) as a kept image.
8. near_duplicate      a perceptual hash (imagehash.phash) within `max_distance` bits of a
                       kept image's; candidates are found by the pigeonhole principle (split
                       into max_distance + 1 bands, a near pair shares one), not all pairs.

A clean image is stored as PNG (lossless, no metadata): the same pixels give the same bytes,
so DVC's content hash of the output changes only when the pixels do.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from aigc.config import ImageCleanParams, ImageNearDuplicateRule
from aigc.data.records import check_accounting, in_collection_order
from aigc.image.collect import RAW_COLUMNS
from aigc.image.sources import png_bytes

CLEAN_COLUMNS = ["id", "png", "label", "source", "source_type", "uri", "collected_at", "meta"]
QUARANTINE_COLUMNS = [*RAW_COLUMNS, "rule", "detail", "duplicate_of"]
QUARANTINE_RULES = (
    "flagged",
    "decompression_bomb",
    "undecodable",
    "truncated",
    "wrong_mode",
    "wrong_size",
    "exact_duplicate",
    "near_duplicate",
)


@dataclass(frozen=True, eq=False)
class ImageCleanResult:
    records: pd.DataFrame
    quarantine: pd.DataFrame
    report: dict


class Rejected(Exception):
    """An image that fails a rule: `rule` and the one-line `detail` the quarantine keeps."""

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(detail)
        self.rule, self.detail = rule, detail


def clean_images(raw: pd.DataFrame, params: ImageCleanParams) -> ImageCleanResult:
    """Apply the rules to `raw`; every raw record is returned clean or quarantined."""
    fix = "Rerun `aigc data collect --modality image`."
    frame = in_collection_order(raw, RAW_COLUMNS, "image clean", fix)
    count = len(frame)
    rule, detail, duplicate_of = (np.full(count, "", dtype=object) for _ in range(3))
    pixels: dict[int, np.ndarray] = {}  # row -> (H, W) or (H, W, 3) uint8, for the live rows
    for row, (data, flags) in enumerate(zip(frame["image"], frame["flags"], strict=True)):
        try:
            if flags:
                raise Rejected("flagged", str(flags))
            pixels[row] = decode(data, params)
        except Rejected as rejected:
            rule[row], detail[row] = rejected.rule, rejected.detail

    ids = {row: pixel_hash(image) for row, image in pixels.items()}
    uris = frame["uri"].to_numpy(object)
    if params.exact_duplicate.enabled:
        first: dict[str, int] = {}
        for row, key in ids.items():
            if key in first:
                rule[row], detail[row] = "exact_duplicate", f"same pixels (id {key})"
                duplicate_of[row] = uris[first[key]]
                del pixels[row]
            else:
                first[key] = row
    if params.near_duplicate.enabled:
        for row, (kept, distance) in near_duplicates(pixels, params.near_duplicate).items():
            rule[row], duplicate_of[row] = "near_duplicate", uris[kept]
            detail[row] = f"phash distance {distance} <= {params.near_duplicate.max_distance}"
            del pixels[row]

    live = sorted(pixels)
    records = frame.iloc[live].reset_index(drop=True)
    records["id"] = [ids[row] for row in live]
    records["png"] = [png_bytes(pixels[row]) for row in live]
    records = records[CLEAN_COLUMNS]
    held = np.flatnonzero(rule != "")
    quarantine = frame.iloc[held].reset_index(drop=True)
    for name, values in (("rule", rule), ("detail", detail), ("duplicate_of", duplicate_of)):
        quarantine[name] = pd.Series(values[held], dtype=frame["uri"].dtype)
    quarantine = quarantine[QUARANTINE_COLUMNS]
    check_accounting(raw, records, quarantine)
    return ImageCleanResult(records, quarantine, build_report(raw, records, quarantine, params))


@contextmanager
def _pixel_limit(max_pixels: int):
    """Pillow's bomb check at `max_pixels`: its warning (above) and error (2x) both raise."""
    before = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS = before


def decode(data: bytes, params: ImageCleanParams) -> np.ndarray:
    """The image as uint8 pixels in `params.mode` and `params.size`; raises Rejected."""
    try:
        with _pixel_limit(params.max_pixels):
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise Rejected("decompression_bomb", f"{error}".split(". ")[0]) from None
    except UnidentifiedImageError:
        raise Rejected("undecodable", "not an image format Pillow can read") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise Rejected("undecodable", f"{type(error).__name__}: {error}") from None
    try:
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        truncated = isinstance(error, EOFError) or "truncat" in str(error).lower()
        rule = "truncated" if truncated else "undecodable"
        raise Rejected(rule, f"{type(error).__name__}: {error}") from None
    return np.asarray(_sized(_converted(image, params), params))


def _converted(image: Image.Image, params: ImageCleanParams) -> Image.Image:
    if image.mode == params.mode:
        return image
    if not params.convert_mode:
        raise Rejected("wrong_mode", f"mode {image.mode}, not {params.mode} (convert_mode off)")
    try:
        converted = image.convert(params.mode)
    except (ValueError, OSError) as error:
        detail = f"mode {image.mode} cannot become {params.mode}: {error}"
        raise Rejected("wrong_mode", detail) from None
    if converted.mode != params.mode:
        raise Rejected("wrong_mode", f"mode {converted.mode} after conversion, not {params.mode}")
    return converted


def _sized(image: Image.Image, params: ImageCleanParams) -> Image.Image:
    size = tuple(params.size)
    if image.size == size:
        return image
    if params.resize == "stretch":
        image = image.resize(size, Image.Resampling.LANCZOS)
    elif params.resize == "center_crop":
        image = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
    if image.size != size:
        width, height = image.size
        raise Rejected("wrong_size", f"{width}x{height}, not {size[0]}x{size[1]} (resize never)")
    return image


def pixel_hash(pixels: np.ndarray) -> str:
    """The content id of an image: sha256 of its shape and pixel bytes, 16 hex digits."""
    digest = hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes())
    return digest.hexdigest()[:16]


def perceptual_hashes(pixels: list[np.ndarray], hash_size: int) -> list[int]:
    """imagehash.phash of each image, as an int of hash_size**2 bits."""
    import imagehash

    hashes = []
    for image in pixels:
        bits = imagehash.phash(Image.fromarray(image), hash_size=hash_size).hash.ravel()
        hashes.append(int.from_bytes(np.packbits(bits).tobytes(), "big"))
    return hashes


def near_duplicates(
    pixels: dict[int, np.ndarray], rule: ImageNearDuplicateRule
) -> dict[int, tuple[int, int]]:
    """{row: (kept row, Hamming distance)} for images near an earlier kept one, in row order.

    A row is compared with the kept rows that share one of max_distance + 1 bands of hash
    bits (two hashes within max_distance bits agree on at least one band) and is a duplicate
    of the nearest, the earliest among equals, when that is within max_distance."""
    rows = sorted(pixels)
    hashes = perceptual_hashes([pixels[row] for row in rows], rule.hash_size)
    bits = rule.hash_size**2
    edges = np.linspace(0, bits, min(rule.max_distance + 1, bits) + 1).astype(int)
    bands = [
        (int(low), (1 << int(high - low)) - 1)
        for low, high in zip(edges[:-1], edges[1:], strict=True)
    ]
    buckets: list[dict[int, list[int]]] = [{} for _ in bands]
    matches: dict[int, tuple[int, int]] = {}
    for position, (row, value) in enumerate(zip(rows, hashes, strict=True)):
        keys = [(value >> shift) & mask for shift, mask in bands]
        candidates = {kept for band, key in enumerate(keys) for kept in buckets[band].get(key, ())}
        if candidates:
            distance, kept = min(((value ^ hashes[kept]).bit_count(), kept) for kept in candidates)
            if distance <= rule.max_distance:
                matches[row] = (rows[kept], distance)
                continue
        for band, key in enumerate(keys):
            buckets[band].setdefault(key, []).append(position)
    return matches


def build_report(
    raw: pd.DataFrame, records: pd.DataFrame, quarantine: pd.DataFrame, params: ImageCleanParams
) -> dict:
    by_rule = quarantine["rule"].value_counts()
    labels = records["label"].replace("", "(unlabeled)").value_counts().sort_index()
    return {
        "input_records": len(raw),
        "output_records": len(records),
        "quarantined_records": len(quarantine),
        "quarantined_by_rule": {rule: int(by_rule.get(rule, 0)) for rule in QUARANTINE_RULES},
        "clean_by_label": {str(label): int(count) for label, count in labels.items()},
        "params": params.model_dump(mode="json"),
    }
