"""The image data stages on real inputs: the three sources, clean's rules, labels and splits.

Images are made in the test: PNG/JPEG files written with Pillow, a CIFAR-10 binary batch
written byte by byte in its documented format, broken files cut from good ones.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from aigc.config import (
    Cifar10Source,
    DigitsSource,
    ImageCleanParams,
    ImageFolderSource,
    ImageLabelParams,
)
from aigc.data.sources.base import SourceError
from aigc.errors import UserError
from aigc.image.clean import clean_images, pixel_hash
from aigc.image.collect import collect_images
from aigc.image.dataset import read_labeled
from aigc.image.label import label_images
from aigc.image.sources import CIFAR10_CLASSES, digits, read_digits
from aigc.stages.label import write_splits

GREY = ImageCleanParams(mode="L", size=(8, 8))


def encoded(pixels: np.ndarray, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def pattern(seed: int, side: int = 8, channels: int = 0) -> np.ndarray:
    """A random image: far from every other seed's in pixels and perceptual hash."""
    shape = (side, side, channels) if channels else (side, side)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def cifar_batch(labels: list[int], seed: int = 0) -> tuple[bytes, np.ndarray]:
    """CIFAR-10's binary format: per record 1 label byte, then R, G and B planes of 32x32."""
    pixels = np.random.default_rng(seed).integers(0, 256, (len(labels), 32, 32, 3), np.uint8)
    records = [
        bytes([label]) + image.transpose(2, 0, 1).tobytes()  # (H, W, C) -> (C, H, W) planes
        for label, image in zip(labels, pixels, strict=True)
    ]
    return b"".join(records), pixels


def raw_frame(images: dict[str, bytes], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """A raw image snapshot of {uri: bytes}, in order."""
    labels = labels or {}
    return pd.DataFrame(
        {
            "id": [f"{index:016x}" for index in range(len(images))],
            "image": list(images.values()),
            "label": [labels.get(uri, "a") for uri in images],
            "source": "test",
            "source_type": "image_folder",
            "uri": list(images),
            "collected_at": "2024-01-01T00:00:00Z",
            "meta": "{}",
            "flags": "",
        }
    )


# --- sources ---------------------------------------------------------------------------


def test_digits_are_sklearns_images_scaled_to_bytes():
    from sklearn.datasets import load_digits

    pixels, targets = digits()
    reference = load_digits()
    assert pixels.shape == (1797, 8, 8) and pixels.dtype == np.uint8
    assert np.array_equal(pixels, np.rint(reference.images * 255 / 16).astype(np.uint8))
    assert np.array_equal(targets, reference.target)
    first = next(read_digits(DigitsSource(name="digits")))
    assert first.label == "0" and first.uri == "sklearn:digits#0"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first.data))), pixels[0])


def test_cifar10_binary_batches_are_read_with_their_labels(tmp_path: Path):
    data, pixels = cifar_batch([3, 0, 9])
    (tmp_path / "data_batch_1.bin").write_bytes(data)
    test_data, _ = cifar_batch([1], seed=1)
    (tmp_path / "test_batch.bin").write_bytes(test_data)
    (tmp_path / "data_batch_1").write_bytes(b"pickled python version: never read")
    collection = collect_images([Cifar10Source(name="cifar", path=str(tmp_path))], tmp_path)
    frame = collection.frame
    assert len(frame) == 4 and set(frame["flags"]) == {""}
    first = frame[frame["uri"].str.endswith("data_batch_1.bin#0")].iloc[0]
    assert first["label"] == CIFAR10_CLASSES[3] == "cat"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(first["image"]))), pixels[0])
    assert sorted(frame["label"]) == sorted(["cat", "airplane", "truck", "automobile"])


def test_cifar10_class_names_truncated_records_and_bad_labels(tmp_path: Path):
    data, _ = cifar_batch([0, 1, 2])
    (tmp_path / "data_batch_1.bin").write_bytes(data[:-100])  # the last record is cut short
    (tmp_path / "batches.meta.txt").write_text("zero\none\n\n")  # two classes: label 2 is bad
    frame = collect_images([Cifar10Source(name="c", path=str(tmp_path))], tmp_path).frame
    assert list(frame["label"]) == ["zero", "one", ""]
    assert list(frame["flags"]) == ["", "", "truncated"]
    bad, _ = cifar_batch([7])
    (tmp_path / "data_batch_1.bin").write_bytes(bad)
    frame = collect_images([Cifar10Source(name="c", path=str(tmp_path))], tmp_path).frame
    assert list(frame["flags"]) == ["bad_label"]


def test_cifar10_without_binary_batches_names_the_python_version(tmp_path: Path):
    (tmp_path / "data_batch_1").write_bytes(b"pickle")
    with pytest.raises(SourceError, match="pickled python version.*binary version"):
        collect_images([Cifar10Source(name="c", path=str(tmp_path))], tmp_path)


def test_image_folder_labels_are_folder_names_and_links_out_are_refused(tmp_path: Path):
    inbox, outside = tmp_path / "images", tmp_path / "outside"
    for folder in (inbox / "cat", inbox / "dog", outside):
        folder.mkdir(parents=True)
    (inbox / "cat" / "a.png").write_bytes(encoded(pattern(1)))
    (inbox / "dog" / "b.JPG").write_bytes(encoded(pattern(2, channels=3), "JPEG"))
    (inbox / "top.png").write_bytes(encoded(pattern(3)))  # top level: unlabeled
    (inbox / "notes.txt").write_text("not an image extension: not read")
    (outside / "secret.png").write_bytes(encoded(pattern(4)))
    (inbox / "cat" / "escape.png").symlink_to(Path("..") / ".." / "outside" / "secret.png")
    (inbox / "linked").symlink_to(outside, target_is_directory=True)
    os.mkfifo(inbox / "dog" / "pipe.png")
    source = ImageFolderSource(name="inbox", path="images")
    collection = collect_images([source], tmp_path)
    labels = dict(
        zip(
            collection.frame["uri"].str.rsplit("/", n=1).str[1],
            collection.frame["label"],
            strict=True,
        )
    )
    assert labels == {"a.png": "cat", "b.JPG": "dog", "top.png": ""}
    refused = {
        Path(entry["path"]).name: entry["reason"]
        for entry in collection.report["sources"][0]["refused"]
    }
    assert set(refused) == {"escape.png", "linked", "pipe.png"}
    assert "outside the folder" in refused["escape.png"] and "outside" in refused["linked"]
    assert refused["pipe.png"] == "not a regular file"


def test_a_failing_image_folder_with_skip_keeps_its_previous_records(tmp_path: Path):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    (tmp_path / "images" / "cat" / "a.png").write_bytes(encoded(pattern(1)))
    source = ImageFolderSource(name="inbox", path="images", missing_ok=False, on_error="skip")
    first = collect_images([source], tmp_path).frame
    (tmp_path / "images" / "cat" / "a.png").unlink()
    (tmp_path / "images" / "cat").rmdir()
    (tmp_path / "images").rmdir()
    again = collect_images([source], tmp_path, previous=first)
    assert again.report["carried_forward"] == 1 and again.frame.equals(first)
    assert "is not a directory" in again.report["sources"][0]["errors"][0]


# --- clean -----------------------------------------------------------------------------


def test_each_broken_image_is_quarantined_with_its_reason():
    good = encoded(pattern(1))
    rgb = encoded(pattern(2, channels=3))
    big = encoded(np.zeros((64, 64), np.uint8))
    images = {
        "a_good": good,  # first in (collected_at, source, uri) order: the one kept
        "garbage": b"this is not an image at all",
        "truncated": encoded(pattern(3, side=48))[:-40],
        "bomb": big,
        "wrong_size": encoded(pattern(4, side=16)),
        "exact_copy": encoded(pattern(1)),  # the same pixels as `good`
        "near_copy": encoded(np.clip(pattern(1).astype(int) + 1, 0, 255).astype(np.uint8)),
        "rgb_converted": rgb,
        "flagged": good + b"x",
    }
    raw = raw_frame(images)
    raw.loc[raw["uri"] == "flagged", "flags"] = "truncated"
    params = GREY.model_copy(update={"max_pixels": 60 * 60})
    result = clean_images(raw, params)
    rules = dict(zip(result.quarantine["uri"], result.quarantine["rule"], strict=True))
    assert rules == {
        "garbage": "undecodable",
        "truncated": "truncated",
        "bomb": "decompression_bomb",
        "wrong_size": "wrong_size",
        "exact_copy": "exact_duplicate",
        "near_copy": "near_duplicate",
        "flagged": "flagged",
    }
    assert sorted(result.records["uri"]) == ["a_good", "rgb_converted"]
    assert len(raw) == len(result.records) + len(result.quarantine)  # nothing lost
    held = result.quarantine.set_index("uri")
    assert (
        held.loc["exact_copy", "duplicate_of"] == held.loc["near_copy", "duplicate_of"] == "a_good"
    )
    assert held.loc["wrong_size", "detail"] == "16x16, not 8x8 (resize never)"
    assert held.loc["near_copy", "detail"].startswith("phash distance")
    assert held.loc["garbage", "image"] == images["garbage"], "the quarantine keeps raw bytes"
    assert result.report["quarantined_by_rule"]["undecodable"] == 1
    converted = Image.open(io.BytesIO(result.records.set_index("uri").loc["rgb_converted", "png"]))
    assert converted.mode == "L" and converted.size == (8, 8)


def test_mode_and_size_policies():
    images = {"rgb": encoded(pattern(2, channels=3)), "large": encoded(pattern(5, side=32))}
    strict = clean_images(raw_frame(images), GREY.model_copy(update={"convert_mode": False}))
    rules = dict(zip(strict.quarantine["uri"], strict.quarantine["rule"], strict=True))
    assert rules == {"rgb": "wrong_mode", "large": "wrong_size"}
    resized = clean_images(raw_frame(images), GREY.model_copy(update={"resize": "stretch"}))
    assert len(resized.records) == 2 and resized.quarantine.empty
    colour = ImageCleanParams(mode="RGB", size=(8, 8), resize="center_crop")
    result = clean_images(raw_frame(images), colour)
    sizes = {Image.open(io.BytesIO(data)).size for data in result.records["png"]}
    assert sizes == {(8, 8)} and result.records["id"].str.len().eq(16).all()


def test_clean_is_deterministic_and_keeps_the_first_duplicate():
    images = {f"img-{index}": encoded(pattern(index % 3)) for index in range(6)}
    first = clean_images(raw_frame(images), GREY)
    again = clean_images(raw_frame(images).iloc[::-1], GREY)
    assert first.records.equals(again.records) and first.quarantine.equals(again.quarantine)
    assert list(first.records["uri"]) == ["img-0", "img-1", "img-2"]
    assert first.records["id"].tolist() == [pixel_hash(pattern(seed)) for seed in range(3)]


# --- label -----------------------------------------------------------------------------


def clean_of(labels: dict[str, str]) -> pd.DataFrame:
    images = {uri: encoded(pattern(index)) for index, uri in enumerate(labels)}
    return clean_images(raw_frame(images, labels), GREY).records


def test_overrides_win_and_unlabeled_images_are_left_out_and_counted():
    clean = clean_of({"a": "cat", "b": "dog", "c": "", "d": ""})
    ids = dict(zip(clean["uri"], clean["id"], strict=True))
    overrides = pd.DataFrame(
        {"id": [ids["a"], ids["c"], "ffffffffffffffff"], "label": ["dog"] * 3}
    )
    result = label_images(clean, ImageLabelParams(), overrides)
    labels = dict(zip(result.frame["id"], result.frame["label"], strict=True))
    assert labels == {ids["a"]: "dog", ids["b"]: "dog", ids["c"]: "dog"}
    assert result.report["overrides"] == {
        "applied": 2,
        "changed": 2,
        "unknown": 1,
        "unknown_ids": ["ffffffffffffffff"],
    }
    assert result.report["unlabeled"] == {"count": 1, "ids": [ids["d"]]}
    assert list(result.frame.columns) == ["id", "label", "split", "png", "source"]
    with pytest.raises(UserError, match="'bird', which no image source gives"):
        label_images(
            clean, ImageLabelParams(), pd.DataFrame({"id": [ids["a"]], "label": ["bird"]})
        )


def test_split_is_stable_when_other_images_come_and_go(tmp_path: Path):
    labels = {f"img-{index}": "ab"[index % 2] for index in range(60)}
    everything = label_images(
        clean_of(labels), ImageLabelParams(), pd.DataFrame(columns=["id", "label"])
    )
    split = dict(zip(everything.frame["id"], everything.frame["split"], strict=True))
    again = label_images(
        clean_of(dict(list(labels.items())[::2])),
        ImageLabelParams(),
        pd.DataFrame(columns=["id", "label"]),
    )
    assert set(again.frame["split"]) <= {"train", "validation", "test"}
    assert all(
        split[identifier] == name
        for identifier, name in zip(again.frame["id"], again.frame["split"], strict=True)
    )
    assert len(again.frame) == 30
    write_splits(everything.frame, tmp_path)
    splits = read_labeled(tmp_path)
    assert sum(len(part) for part in splits.values()) == 60
    assert all(part.classes == ["a", "b"] for part in splits.values())
    train = splits["train"]
    assert train.pixels.shape[1:] == (8, 8, 1) and train.pixels.dtype == np.uint8
    assert train.labels.dtype == np.int64
