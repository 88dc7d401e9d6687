"""Collection into immutable snapshots: unchanged sources write nothing, new data does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aigc.config import FolderSource, HttpSource
from aigc.data.collect import collect_sources, latest_snapshot, read_snapshot, write_snapshot
from aigc.data.records import text_id
from aigc.data.sources.base import SourceError

T1 = datetime(2026, 1, 1, 3, 0, tzinfo=UTC)
T2 = datetime(2026, 1, 2, 3, 0, tzinfo=UTC)


def inbox_with(tmp_path, **files: str):
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, text in files.items():
        (inbox / name).write_text(text)
    return FolderSource(name="inbox", path="inbox")


def test_records_carry_id_source_uri_time_and_metadata(tmp_path):
    source = inbox_with(tmp_path, **{"a.txt": "Hello   world\r\n"})
    frame = collect_sources([source], tmp_path, now=T1).frame
    row = frame.iloc[0]
    assert row["id"] == text_id("Hello   world")
    assert (row["source"], row["source_type"]) == ("inbox", "folder")
    assert row["uri"].startswith("file://") and row["collected_at"] == "2026-01-01T03:00:00Z"
    assert '"bytes": 15' in row["meta"]


def test_unchanged_sources_write_no_new_snapshot(tmp_path):
    source = inbox_with(tmp_path, **{"a.txt": "first document", "b.txt": "second document"})
    raw = tmp_path / "raw"
    first = write_snapshot(collect_sources([source], tmp_path, now=T1), raw, now=T1)
    assert first.new and first.records == 2
    previous = read_snapshot(first.path)
    again = write_snapshot(collect_sources([source], tmp_path, T2, previous), raw, now=T2)
    assert not again.new and again.path == first.path
    assert sorted(path.name for path in raw.glob("*.parquet")) == [first.path.name]


def test_new_data_writes_a_new_snapshot_and_never_touches_the_old(tmp_path):
    source = inbox_with(tmp_path, **{"a.txt": "first document"})
    raw = tmp_path / "raw"
    first = write_snapshot(collect_sources([source], tmp_path, now=T1), raw, now=T1)
    old_bytes = first.path.read_bytes()
    inbox_with(tmp_path, **{"b.txt": "a new arrival"})
    previous = read_snapshot(first.path)
    second = write_snapshot(collect_sources([source], tmp_path, T2, previous), raw, now=T2)
    assert second.new and second.path != first.path and latest_snapshot(raw) == second.path
    assert first.path.read_bytes() == old_bytes
    frame = read_snapshot(second.path).set_index("uri")
    times = {uri.rsplit("/", 1)[-1]: value for uri, value in frame["collected_at"].items()}
    assert times == {"a.txt": "2026-01-01T03:00:00Z", "b.txt": "2026-01-02T03:00:00Z"}


def test_failing_source_with_fail_stops_naming_the_source(tmp_path):
    source = inbox_with(tmp_path, **{"t.csv": "title\nx\n"})
    with pytest.raises(SourceError, match="source 'inbox'.*t.csv"):
        collect_sources([source], tmp_path, now=T1)


def test_failing_source_with_skip_goes_on_and_reports(tmp_path):
    inbox_with(tmp_path, **{"t.csv": "title\nx\n", "ok.txt": "a fine document"})
    source = FolderSource(name="inbox", path="inbox", on_error="skip")
    dead = HttpSource(
        name="dead", url="http://127.0.0.1:9/", retries=0, on_error="skip", timeout_seconds=1
    )
    collection = collect_sources([source, dead], tmp_path, now=T1)
    assert collection.frame["text"].tolist() == ["a fine document"]
    inbox, http = collection.report["sources"]
    assert inbox["records"] == 1 and "t.csv" in inbox["errors"][0]
    assert http["records"] == 0 and "'dead'" in http["errors"][0]


def test_links_out_of_a_folder_are_refused_and_reported_not_collected(tmp_path):
    (tmp_path / "private.txt").write_text("a private file outside the inbox")
    source = inbox_with(tmp_path, **{"a.txt": "a document in the inbox"})
    (tmp_path / "inbox" / "x.txt").symlink_to(tmp_path / "private.txt")
    collection = collect_sources([source], tmp_path, now=T1)
    assert collection.frame["text"].tolist() == ["a document in the inbox"]
    (report,) = collection.report["sources"]
    assert report["records"] == 1
    assert report["refused"] == [
        {
            "path": str((tmp_path / "inbox").resolve() / "x.txt"),
            "reason": f"symbolic link to {(tmp_path / 'private.txt').resolve()}, "
            "outside the folder",
        }
    ]
