"""Folder sources never read outside the project: hard links and a linked-away inbox.

Real files on disk: a real hard link (os.link) from the inbox to a file outside it, and a
real symbolic link standing in for the whole inbox.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aigc.config import FolderSource, ImageFolderSource
from aigc.data.sources.base import SourceError
from aigc.data.sources.folder import list_files
from aigc.errors import UserError
from aigc.image.collect import collect_images
from aigc.text.collect import collect_sources
from aigc.text.sources.folder import read_file

SECRET = "a private file that lives outside the inbox"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with an inbox holding one document, and a folder outside the project."""
    root = tmp_path / "project"
    (root / "inbox").mkdir(parents=True)
    (root / "inbox" / "a.txt").write_text("a document in the inbox")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text(SECRET)
    return root


def test_a_hard_link_to_a_file_outside_is_refused_and_reported_not_collected(project: Path):
    os.link(project.parent / "outside" / "secret.txt", project / "inbox" / "linked.txt")
    source = FolderSource(name="inbox", path="inbox")
    collection = collect_sources([source], project)
    assert collection.frame["text"].tolist() == ["a document in the inbox"]
    (report,) = collection.report["sources"]
    (refused,) = report["refused"]
    assert refused["path"] == str((project / "inbox").resolve() / "linked.txt")
    assert refused["reason"].startswith("hard link (2 links")
    assert "allow_hard_links: true" in refused["reason"] and "'inbox'" in refused["reason"]


def test_hard_links_are_read_once_when_allowed(project: Path):
    os.link(project.parent / "outside" / "secret.txt", project / "inbox" / "linked.txt")
    os.link(project / "inbox" / "a.txt", project / "inbox" / "b.txt")  # two names, one file
    source = FolderSource(name="inbox", path="inbox", allow_hard_links=True)
    listing = list_files(source, project)
    assert [path.name for path in listing.files] == ["a.txt", "linked.txt"]
    assert listing.refused == []
    texts = [record.text for path in listing.files for record in read_file(source, path)]
    assert texts == ["a document in the inbox", SECRET]


def test_a_hard_link_made_after_listing_is_refused_when_read(project: Path):
    source = FolderSource(name="inbox", path="inbox")
    (path,) = list_files(source, project).files
    os.link(path, project.parent / "outside" / "a-copy.txt")
    with pytest.raises(SourceError) as error:
        list(read_file(source, path))
    message = str(error.value)
    assert "'inbox'" in message and "a.txt" in message and "hard link (2 links" in message
    assert "allow_hard_links" in message


@pytest.mark.parametrize("how", ["symlinked inbox", "path leading out"])
def test_an_inbox_outside_the_project_is_one_clear_error(project: Path, how: str):
    outside = project.parent / "outside"
    if how == "symlinked inbox":
        (project / "data").mkdir()
        (project / "data" / "inbox").symlink_to(outside, target_is_directory=True)
        source = FolderSource(name="inbox", path="data/inbox")
    else:
        source = FolderSource(name="inbox", path="../outside")
    with pytest.raises(SourceError) as error:
        collect_sources([source], project)
    message = str(error.value)
    assert isinstance(error.value, UserError) and "\n" not in message
    assert message.startswith("source 'inbox': ")
    assert f"resolves to {outside.resolve()}, outside the project" in message
    assert "Fix: move the folder into the project" in message
    assert SECRET not in message


def test_an_inbox_linked_to_a_folder_inside_the_project_is_read(project: Path):
    (project / "data").mkdir()
    (project / "data" / "inbox").symlink_to(project / "inbox", target_is_directory=True)
    source = FolderSource(name="inbox", path="data/inbox")
    frame = collect_sources([source], project).frame
    assert frame["text"].tolist() == ["a document in the inbox"]


def test_the_image_folder_refuses_hard_links_and_a_folder_outside_the_project(project: Path):
    images = project / "images" / "cat"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"\x89PNG an image in the folder")
    (project.parent / "outside" / "secret.png").write_bytes(b"\x89PNG a private image")
    os.link(project.parent / "outside" / "secret.png", images / "linked.png")
    collection = collect_images([ImageFolderSource(name="pictures", path="images")], project)
    assert [uri.rsplit("/", 1)[1] for uri in collection.frame["uri"]] == ["a.png"]
    (refused,) = collection.report["sources"][0]["refused"]
    assert Path(refused["path"]).name == "linked.png"
    assert "hard link" in refused["reason"] and "'pictures'" in refused["reason"]

    allowed = ImageFolderSource(name="pictures", path="images", allow_hard_links=True)
    assert len(collect_images([allowed], project).frame) == 2

    (project / "linked-images").symlink_to(project.parent / "outside")
    away = ImageFolderSource(name="away", path="linked-images")
    with pytest.raises(SourceError, match="source 'away': .*outside the project"):
        collect_images([away], project)
