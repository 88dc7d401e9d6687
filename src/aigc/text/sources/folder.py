"""The text `folder` source: .txt, .md, .jsonl and .csv files, read recursively.

Per file type:
- .txt / .md: the whole file is one record;
- .jsonl: one record per line, text in the configured field (`jsonl_field`);
- .csv: one record per row, text in the configured column (`csv_column`).

What is read and refused is `aigc.data.sources.folder.list_files`' (shared with image
folders: nothing outside the folder is read). Nothing is dropped silently. A file that is not
text (NUL bytes) becomes a record flagged `binary`; invalid UTF-8 is replaced (U+FFFD) and
the records whose text holds a replaced byte are flagged `invalid_utf8` (one bad line does
not flag the rest of a .jsonl or .csv file); a JSON line that does not parse, or lacks the
field, becomes a record flagged `malformed_json` or `missing_field` holding the raw line. The
clean stage quarantines these with their reason. A CSV without the configured column cannot
be read row by row: it raises `SourceError` naming the file, the columns it has and the
setting to change.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

from aigc.config import FolderSource
from aigc.data.sources.base import SourceError, SourceRecord
from aigc.data.sources.folder import read_no_follow

_SNIFF_BYTES = 8192


_SNIFF_BYTES = 8192


def read_file(source: FolderSource, path: Path) -> Iterator[SourceRecord]:
    """The records of one file; raises SourceError for a file that cannot be read at all."""
    data = read_no_follow(path, source)
    uri = path.as_uri()
    meta = {"path": str(path), "bytes": len(data)}
    if b"\x00" in data[:_SNIFF_BYTES]:
        text = data.decode("utf-8", errors="replace").replace("\x00", "")
        yield SourceRecord(text=text, uri=uri, meta=meta, flags=("binary",))
        return
    text, flags = decode(data)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        yield from _jsonl_records(source, text, uri, meta, flags)
    elif suffix == ".csv":
        yield from _csv_records(source, path, text, uri, meta, flags)
    else:
        yield SourceRecord(text=text, uri=uri, meta=meta, flags=flags)


def decode(data: bytes) -> tuple[str, tuple[str, ...]]:
    """UTF-8 text, with invalid bytes replaced (U+FFFD) and flagged rather than fatal."""
    try:
        return data.decode("utf-8"), ()
    except UnicodeDecodeError:
        return data.decode("utf-8", errors="replace"), ("invalid_utf8",)


def record_flags(text: str, flags: tuple[str, ...]) -> tuple[str, ...]:
    """The flags of a whole file or page that apply to one record cut from it.

    `invalid_utf8` only applies where the record's text holds a replaced byte (U+FFFD).
    """
    if "invalid_utf8" in flags and "\ufffd" not in text:
        return tuple(flag for flag in flags if flag != "invalid_utf8")
    return flags


def _jsonl_records(
    source: FolderSource, text: str, uri: str, meta: dict, flags: tuple[str, ...]
) -> Iterator[SourceRecord]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        yield json_line_record(line, f"{uri}#L{number}", source.jsonl_field, meta, flags)


def json_line_record(
    line: str, uri: str, field: str, meta: dict, flags: tuple[str, ...] = ()
) -> SourceRecord:
    """One JSON line → a record; a line that does not parse or lacks `field` is flagged."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError as error:
        detail = {**meta, "error": f"invalid JSON: {error.msg} at column {error.colno}"}
        flags = (*record_flags(line, flags), "malformed_json")
        return SourceRecord(text=line, uri=uri, meta=detail, flags=flags)
    return json_item_record(item, uri, field, meta, flags, raw=line)


def json_item_record(
    item: object, uri: str, field: str, meta: dict, flags: tuple[str, ...] = (), raw: str = ""
) -> SourceRecord:
    """A parsed JSON item → a record: `field` is the text, other scalar fields the metadata."""
    raw = raw or json.dumps(item, ensure_ascii=False)
    if not isinstance(item, dict) or not isinstance(item.get(field), str):
        problem = "not an object" if not isinstance(item, dict) else f"no string field {field!r}"
        flags = (*record_flags(raw, flags), "missing_field")
        return SourceRecord(text=raw, uri=uri, meta={**meta, "error": problem}, flags=flags)
    extra = {
        key: value
        for key, value in item.items()
        if key != field and isinstance(value, str | int | float | bool)
    }
    text = item[field]
    return SourceRecord(
        text=text, uri=uri, meta={**meta, **extra}, flags=record_flags(text, flags)
    )


def _csv_records(
    source: FolderSource, path: Path, text: str, uri: str, meta: dict, flags: tuple[str, ...]
) -> Iterator[SourceRecord]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    columns = reader.fieldnames or []
    if source.csv_column not in columns:
        raise SourceError(
            source.name,
            str(path),
            f"CSV has no column {source.csv_column!r} (columns: {columns})",
            f"set `csv_column` of source {source.name!r} to one of these columns, "
            "or fix the file's header",
        )
    for number, row in enumerate(reader, start=2):
        text_value = row.get(source.csv_column) or ""
        extra = {key: value for key, value in row.items() if key and key != source.csv_column}
        yield SourceRecord(
            text=text_value,
            uri=f"{uri}#L{number}",
            meta={**meta, **extra},
            flags=record_flags(text_value, flags),
        )
