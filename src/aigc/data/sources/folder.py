"""The `folder` source: a directory of .txt, .md, .jsonl and .csv files, read recursively.

This is the inbox where new data lands between scheduled runs. Per file type:
- .txt / .md: the whole file is one record;
- .jsonl: one record per line, text in the configured field (`jsonl_field`);
- .csv: one record per row, text in the configured column (`csv_column`).

`list_files` says what is read and what is refused. Nothing outside the folder is read: the
folder itself, resolved, must lie inside the project (a `path` that is, or passes through, a
link to elsewhere is an error); a symbolic link (to a file or a directory) whose target
resolves outside it, broken links, a regular file with more than one hard link (the same
file may have a name outside the folder; `allow_hard_links: true` accepts them) and anything
that is not a regular file are refused and reported with the reason. Links inside the folder
are followed once: each file is read once, under its real path, however many links lead to
it; linked directories are never entered (their target is in the folder and read anyway, or
outside it and refused), so a link cannot make a cycle. Hidden files are skipped. Files are
opened without following a link swapped in after listing, and their link count is checked
again on the open file.

Nothing is dropped silently. A file that is not text (NUL bytes) becomes a record flagged
`binary`; invalid UTF-8 is replaced (U+FFFD) and the records whose text holds a replaced byte
are flagged `invalid_utf8` (one bad line does not flag the rest of a .jsonl or .csv file); a
JSON line that does not parse, or lacks the field, becomes a record flagged `malformed_json`
or `missing_field` holding the raw line. The clean stage quarantines these with their reason.
A CSV without the configured column cannot be read row by row: it raises `SourceError`
naming the file, the columns it has and the setting to change.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from aigc.config import FolderSource, ImageFolderSource
from aigc.data.sources.base import SourceError, SourceRecord

_SNIFF_BYTES = 8192


@dataclass(frozen=True)
class Listing:
    """The files a folder source reads (real paths, each once, sorted) and what it refuses."""

    files: list[Path] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)  # {"path": ..., "reason": ...}


def source_folder(source: FolderSource, root: Path) -> Path:
    """The source's folder, resolved (relative paths are relative to the project root)."""
    return (root / source.path).resolve()  # an absolute `path` ignores `root`


def list_files(source: FolderSource | ImageFolderSource, root: Path) -> Listing:
    """What the source reads, in a stable order, and the entries it refuses, with reasons."""
    folder = source_folder(source, root)
    project = root.resolve()
    if not folder.is_relative_to(project):
        raise SourceError(
            source.name,
            str(root / source.path),
            f"resolves to {folder}, outside the project {project}",
            "move the folder into the project (a real folder, not a link to one elsewhere) "
            "and point `path` of this source at it",
        )
    if not folder.is_dir():
        if source.missing_ok and not folder.exists():
            return Listing()
        raise SourceError(
            source.name,
            str(folder),
            "is not a directory",
            "create it, or point `path` of this source at an existing folder",
        )
    extensions = {extension.lower() for extension in source.extensions}
    files: dict[tuple[int, int], Path] = {}  # (device, inode): each file once, whatever its names
    refused: list[dict[str, str]] = []
    # followlinks=False: a linked directory is listed in `directories` but never entered.
    for directory, directories, names in os.walk(folder):
        here = Path(directory)
        directories[:] = sorted(name for name in directories if not name.startswith("."))
        for name in directories:
            if (here / name).is_symlink():
                _, problem = _target(here / name, folder, "directory ")
                if problem:
                    refused.append({"path": str(here / name), "reason": problem})
        for name in sorted(names):
            path = here / name
            if name.startswith(".") or path.suffix.lower() not in extensions:
                continue
            target, problem = _target(path, folder)
            if not problem:
                problem = _not_regular(target, source)
            if problem:
                refused.append({"path": str(path), "reason": problem})
            else:
                status = target.stat()
                key = (status.st_dev, status.st_ino)
                files[key] = min(files.get(key, target), target)
    refused.sort(key=lambda item: item["path"])
    return Listing(files=sorted(files.values()), refused=refused)


def _not_regular(target: Path, source: FolderSource | ImageFolderSource) -> str:
    """Why a resolved entry of the folder is not read, or ""."""
    if not target.is_file():
        return "not a regular file"
    links = target.stat().st_nlink
    if links > 1 and not source.allow_hard_links:
        return f"{_hard_link(links)}; {_hard_link_fix(source)}"
    return ""


def _hard_link(links: int) -> str:
    return f"hard link ({links} links: the same file may also be outside the folder)"


def _hard_link_fix(source: FolderSource | ImageFolderSource) -> str:
    return f"set `allow_hard_links: true` on source {source.name!r} to read such files"


def _target(path: Path, folder: Path, kind: str = "") -> tuple[Path, str]:
    """(real path, "") for an entry inside `folder`, else (path, why it is refused)."""
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):  # RuntimeError: a link loop, on Python < 3.13
        try:
            return path, f"broken symbolic link (to {os.readlink(path)})"
        except OSError:
            return path, "disappeared while the folder was listed"
    if not target.is_relative_to(folder):
        return path, f"symbolic link to {kind}{target}, outside the folder"
    return target, ""


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


def read_no_follow(path: Path, source: FolderSource | ImageFolderSource | None = None) -> bytes:
    """The bytes of `path`; OSError if it has become a symbolic link since it was listed.

    With a folder `source`, its hard-link rule is checked again on the open file: a link
    made after listing is refused too (SourceError)."""
    descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(descriptor, "rb") as handle:
        links = os.fstat(descriptor).st_nlink
        if source is not None and links > 1 and not source.allow_hard_links:
            raise SourceError(source.name, str(path), _hard_link(links), _hard_link_fix(source))
        return handle.read()


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
