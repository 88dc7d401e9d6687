"""The image `collect` stage: read every image source into one immutable raw snapshot.

The text collection's rules hold (aigc.data.collect): snapshots in data/image/raw, written
once and only when something changed; records seen before keep their `collected_at`; a
failing source stops the run (`on_error: fail`) or keeps its records of the previous snapshot
(`skip`), counted as `carried_forward`; a folder reports what it `refused`. A raw record:

    id            sha256 of the encoded bytes, 16 hex digits (clean gives the pixel hash)
    image         the encoded image as the source gave it (PNG for digits and CIFAR-10)
    label         the source's class ("" for none)
    source, source_type, uri, collected_at, meta, flags    as for text
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import pandas as pd

from aigc.config import Cifar10Source, DigitsSource, ImageFolderSource
from aigc.data.collect import Collection, SourceOutcome, gather, guarded, read_all
from aigc.data.sources.folder import list_files, source_folder
from aigc.image.sources import (
    ImageRecord,
    cifar10_classes,
    cifar10_files,
    read_cifar10_file,
    read_digits,
    read_image_file,
)

RAW_COLUMNS = [
    "id",
    "image",
    "label",
    "source",
    "source_type",
    "uri",
    "collected_at",
    "meta",
    "flags",
]
TEXT_COLUMNS = [column for column in RAW_COLUMNS if column != "image"]
AnyImageSource = DigitsSource | ImageFolderSource | Cifar10Source


def image_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def collect_images(
    sources: Iterable[AnyImageSource],
    root: Path,
    now: datetime | None = None,
    previous: pd.DataFrame | None = None,
) -> Collection:
    """Read all sources; raise SourceError for a failing source whose on_error is `fail`."""
    frame, outcomes = gather(
        sources, root, now, previous, RAW_COLUMNS, TEXT_COLUMNS, _read_source, _row, _why_nothing
    )
    return Collection(frame=frame, sources=outcomes)


def _read_source(
    source: AnyImageSource, root: Path, outcome: SourceOutcome, earlier: pd.DataFrame
) -> tuple[list[ImageRecord], pd.DataFrame]:
    """(records read, records of `earlier` kept for the files that failed), per on_error."""
    if isinstance(source, DigitsSource):
        records = read_all(source, outcome, lambda: read_digits(source))
        return (records, earlier.iloc[:0]) if records is not None else ([], earlier)
    if isinstance(source, Cifar10Source):
        found = guarded(source, outcome, lambda: cifar10_files(source, root))
        if found is None:
            return [], earlier
        folder, files = found
        classes = cifar10_classes(folder)
        reads = [(path, lambda path=path: read_cifar10_file(path, classes)) for path in files]
    else:
        listing = guarded(source, outcome, lambda: list_files(source, root))
        if listing is None:
            return [], earlier
        outcome.refused = listing.refused
        folder = source_folder(source, root)
        reads = [
            (path, lambda path=path: [read_image_file(source, path, folder)])
            for path in listing.files
        ]
    records, failed_uris = [], []
    for path, read in reads:
        got = read_all(source, outcome, read)
        if got is None:
            failed_uris.append(path.as_uri())
        records += got or []
    file_uri = earlier["uri"].astype(object).str.split("#", n=1).str[0]
    return records, earlier[file_uri.isin(failed_uris)]


def _why_nothing(source: AnyImageSource, outcome: SourceOutcome, root: Path) -> str:
    """One line for NothingCollected: the source, where it reads, and why it gave nothing."""
    if isinstance(source, DigitsSource):
        where, empty = "scikit-learn's digits", "no images"
    else:
        where = f"folder {source_folder(source, root)}"
        empty = "no " + ", ".join(getattr(source, "extensions", source.files)) + " files"
    if outcome.errors:
        empty = f"failed (on_error: skip) and no earlier records: {outcome.errors[-1]}"
    elif outcome.refused:
        empty += f"; refused {len(outcome.refused)} entries (see the report)"
    return f"{source.name!r} ({where}): {empty}"


def _row(source: AnyImageSource, record: ImageRecord) -> dict:
    return {
        "id": image_id(record.data),
        "image": record.data,
        "label": record.label,
        "source": source.name,
        "source_type": source.type,
        "uri": record.uri,
        "collected_at": "",
        "meta": json.dumps(record.meta, sort_keys=True, ensure_ascii=False),
        "flags": ",".join(sorted(set(record.flags))),
    }
