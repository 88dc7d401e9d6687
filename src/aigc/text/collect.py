"""The text `collect` core: every text source read into one raw frame and its report.

    collection = collect_sources(params.collect.sources, root, now, previous)

The rules every modality's collection keeps (first-seen times, `on_error`, what is carried
forward, NothingCollected) are aigc.data.collect's; this module reads text's sources
(builtin, folder, http) and makes text's raw record (aigc.data.records).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path

import pandas as pd

from aigc.config import BuiltinSource, FolderSource, HttpSource
from aigc.data.collect import Collection, SourceOutcome, gather, guarded, read_all
from aigc.data.records import RAW_COLUMNS, RAW_SCHEMA, check, text_id
from aigc.data.sources.base import SourceRecord
from aigc.data.sources.folder import list_files, source_folder
from aigc.paths import WRITE_FIXES, NotWritable, require_writable
from aigc.text.sources.builtin import read_builtin
from aigc.text.sources.folder import read_file
from aigc.text.sources.http import read_http

AnySource = BuiltinSource | FolderSource | HttpSource


def collect_sources(
    sources: Iterable[AnySource],
    root: Path,
    now: datetime | None = None,
    previous: pd.DataFrame | None = None,
) -> Collection:
    """Read all sources; raise SourceError for a failing source whose on_error is `fail`."""
    frame, outcomes = gather(
        sources, root, now, previous, RAW_COLUMNS, RAW_COLUMNS, _read_source, _row, _why_nothing
    )
    check(frame, RAW_SCHEMA, "collect")
    return Collection(frame=frame, sources=tuple(outcomes))


def _read_source(
    source: AnySource, root: Path, outcome: SourceOutcome, earlier: pd.DataFrame
) -> tuple[list[SourceRecord], pd.DataFrame]:
    """(records read, records of `earlier` kept for what failed), applying on_error."""
    if not isinstance(source, FolderSource):
        if isinstance(source, BuiltinSource):
            cache = root / ".aigc" / "cache"  # parsing CPython's sources takes seconds
            records = read_all(source, outcome, lambda: _read_builtin(source, cache))
        else:
            records = read_all(source, outcome, lambda: read_http(source))
        return (records, earlier.iloc[:0]) if records is not None else ([], earlier)
    listing = guarded(source, outcome, lambda: list_files(source, root))
    if listing is None:
        return [], earlier
    outcome.refused = listing.refused
    records, failed_uris = [], []
    for path in listing.files:
        read = read_all(source, outcome, lambda path=path: read_file(source, path))
        if read is None:
            failed_uris.append(path.as_uri())
        records += read or []
    # a file's records have uri `file:///…/name` or, one per line or row, `file:///…/name#L3`
    file_uri = earlier["uri"].astype(object).str.split("#", n=1).str[0]
    return records, earlier[file_uri.isin(failed_uris)]


def _read_builtin(source: BuiltinSource, cache: Path) -> Iterator[SourceRecord]:
    """The builtin source's records. Its cache is the project's: a cache that cannot be
    written (a read-only folder, the file-size limit) is NotWritable naming the cache, not
    an error of the source."""
    require_writable(cache)
    try:
        yield from read_builtin(source, cache)
    except OSError as error:
        ours = error.filename is None or Path(error.filename).is_relative_to(cache)
        if ours and error.errno in WRITE_FIXES:
            raise NotWritable(error.filename or cache, error) from None
        raise


def _why_nothing(source: AnySource, outcome: SourceOutcome, root: Path) -> str:
    """One line for NothingCollected: the source, where it reads, and why it gave nothing."""
    if isinstance(source, FolderSource):
        where = f"folder {source_folder(source, root)}"
        empty = "no " + ", ".join(source.extensions) + " files"
    elif isinstance(source, HttpSource):
        where, empty = source.url, "the API returned no records"
    else:
        where, empty = "builtin", "nothing matched `include` / `exclude_packages`"
    if outcome.errors:
        empty = f"failed (on_error: skip) and no earlier records: {outcome.errors[-1]}"
    elif outcome.refused:
        empty += f"; refused {len(outcome.refused)} entries (see the report)"
    return f"{source.name!r} ({where}): {empty}"


def _row(source, record: SourceRecord) -> dict:
    return {
        "id": text_id(record.text),
        "text": record.text,
        "source": source.name,
        "source_type": source.type,
        "uri": record.uri,
        "collected_at": "",
        "meta": json.dumps(record.meta, sort_keys=True, ensure_ascii=False),
        "flags": ",".join(sorted(set(record.flags))),
    }
