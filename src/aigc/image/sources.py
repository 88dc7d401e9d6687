"""The image sources: scikit-learn's digits, an image folder, CIFAR-10's binary batches.

A reader yields `ImageRecord`s: the encoded image (a file's own bytes, or PNG for the
sources that hold pixels), the class the source gives it ("" for none), a uri and metadata.
As for text, nothing is dropped silently: a record a reader cannot make whole is yielded with
a flag (CIFAR: `truncated` for a short last record, `bad_label` for a label byte outside the
classes) and the clean stage quarantines it; a problem that makes a whole source or file
unusable raises `SourceError` naming the source, the location and the fix.

    digits        sklearn.datasets.load_digits: 1,797 8x8 images, 17 grey levels scaled to 0..255
    image_folder  `class_name/*.png|jpg|…`, the ImageFolder convention: the label is the name of
                  the folder under the source's folder; files at its top level are unlabeled.
                  Listing and refusals are the text folder source's (aigc.data.sources.folder):
                  the folder must resolve inside the project; links out of it, broken links,
                  files with several hard links (unless `allow_hard_links`) and non-regular
                  files (FIFOs) are refused with a reason; files are opened with O_NOFOLLOW.
    cifar10       `data_batch_*.bin`, `test_batch.bin`: records of 1 label byte + 3,072 pixel
                  bytes (the R plane, then G, then B, each 32x32 row-major). The pickled
                  "python version" is never read (unpickling runs code).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from aigc.config import Cifar10Source, DigitsSource, ImageFolderSource
from aigc.data.sources.base import SourceError
from aigc.data.sources.folder import read_no_follow, source_folder

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_SIDE = 32
CIFAR10_RECORD = 1 + 3 * CIFAR10_SIDE * CIFAR10_SIDE  # a label byte, then R, G, B planes
CIFAR10_META = "batches.meta.txt"


@dataclass(frozen=True)
class ImageRecord:
    data: bytes  # an encoded image file
    uri: str
    label: str = ""  # the source's class; "" when it gives none
    meta: dict = field(default_factory=dict)
    flags: tuple[str, ...] = ()


def png_bytes(pixels: np.ndarray) -> bytes:
    """(H, W) or (H, W, 3) uint8 → PNG bytes, no metadata, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    Image.fromarray(pixels, "L" if pixels.ndim == 2 else "RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def read_digits(source: DigitsSource) -> Iterator[ImageRecord]:
    for index, (image, target) in enumerate(zip(*digits(), strict=True)):
        yield ImageRecord(
            png_bytes(image), f"sklearn:digits#{index}", str(int(target)), {"index": index}
        )


def digits() -> tuple[np.ndarray, np.ndarray]:
    """(pixels (1797, 8, 8) uint8 0..255, targets (1797,)): `load_digits`' images and targets.

    Read from the file `load_digits` reads, found without importing scikit-learn: importing
    sklearn.datasets takes seconds, reading the file a tenth of one."""
    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is not None and path.is_file():
        table = np.loadtxt(path, delimiter=",")  # (1797, 65): 64 pixels, then the target
        images, targets = table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    else:
        from sklearn.datasets import load_digits

        loaded = load_digits()
        images, targets = loaded.images, loaded.target
    return np.rint(images * (255 / 16)).astype(np.uint8), targets  # 17 grey levels → 0..255


def image_label(path: Path, folder: Path) -> str:
    """The class of a file in an image folder: its top directory's name, "" at the top level."""
    parts = path.relative_to(folder).parts
    return parts[0] if len(parts) > 1 else ""


def read_image_file(source: ImageFolderSource, path: Path, folder: Path) -> ImageRecord:
    data = read_no_follow(path, source)
    meta = {"path": str(path), "bytes": len(data)}
    return ImageRecord(data, path.as_uri(), image_label(path, folder), meta)


def cifar10_files(source: Cifar10Source, root: Path) -> tuple[Path, list[Path]]:
    """(the folder, its batch files in name order); SourceError when there are none."""
    folder = source_folder(source, root)
    if not folder.is_dir():
        raise SourceError(
            source.name,
            str(folder),
            "is not a directory",
            "point `path` at the folder holding CIFAR-10's binary batches",
        )
    files = sorted({path for pattern in source.files for path in folder.glob(pattern)})
    if not files:
        pickled = sorted(path.name for path in folder.glob("data_batch_*") if not path.suffix)
        hint = (
            f" ({', '.join(pickled[:3])} look like the pickled python version, which is never "
            "read)"
            if pickled
            else ""
        )
        raise SourceError(
            source.name,
            str(folder),
            f"no file matches {list(source.files)}{hint}",
            "put CIFAR-10's binary version (cifar-10-binary.tar.gz: data_batch_1.bin, …, "
            "test_batch.bin) in this folder",
        )
    return folder, files


def cifar10_classes(folder: Path) -> tuple[str, ...]:
    """The class names of `batches.meta.txt` (one a line), else CIFAR-10's own ten."""
    meta = folder / CIFAR10_META
    if not meta.is_file():
        return CIFAR10_CLASSES
    names = [line.strip() for line in meta.read_text(encoding="utf-8").splitlines()]
    return tuple(name for name in names if name) or CIFAR10_CLASSES


def read_cifar10_file(path: Path, classes: tuple[str, ...]) -> Iterator[ImageRecord]:
    """The records of one binary batch; a short last record is yielded flagged `truncated`."""
    if path.is_symlink() or not path.is_file():
        raise OSError(f"{path}: not a regular file (links and special files are not read)")
    data = read_no_follow(path)
    whole = len(data) // CIFAR10_RECORD
    records = np.frombuffer(data, np.uint8, whole * CIFAR10_RECORD).reshape(whole, CIFAR10_RECORD)
    side = CIFAR10_SIDE
    pixels = records[:, 1:].reshape(whole, 3, side, side).transpose(0, 2, 3, 1)  # (N, H, W, C)
    uri = path.as_uri()
    for index in range(whole):
        label_byte = int(records[index, 0])
        meta = {"path": str(path), "index": index, "label_byte": label_byte}
        if label_byte < len(classes):
            yield ImageRecord(
                png_bytes(pixels[index]), f"{uri}#{index}", classes[label_byte], meta
            )
        else:
            yield ImageRecord(png_bytes(pixels[index]), f"{uri}#{index}", "", meta, ("bad_label",))
    rest = data[whole * CIFAR10_RECORD :]
    if rest:
        meta = {"path": str(path), "index": whole, "bytes": len(rest)}
        yield ImageRecord(rest, f"{uri}#{whole}", "", meta, ("truncated",))
