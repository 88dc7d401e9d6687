"""A folder source's files, text's or images': what is read, what is refused, and how.

`list_files` says what is read and what is refused. Nothing outside the folder is read: the
folder itself, resolved, must lie inside the project (a `path` that is, or passes through, a
link to elsewhere is an error); a symbolic link (to a file or a directory) whose target
resolves outside it, broken links, a regular file with more than one hard link (the same
file may have a name outside the folder; `allow_hard_links: true` accepts them) and anything
that is not a regular file are refused and reported with the reason. Links inside the folder
are followed once: each file is read once, under its real path, however many links lead to
it; linked directories are never entered (their target is in the folder and read anyway, or
outside it and refused), so a link cannot make a cycle. Hidden files are skipped. Files are
opened without following a link swapped in after listing (`read_no_follow`), and their link
count is checked again on the open file. What a file holds is the modality's reader's
(aigc.text.sources.folder, aigc.image.sources).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from aigc.config import FolderSource, ImageFolderSource
from aigc.data.sources.base import SourceError


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
