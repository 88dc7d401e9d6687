"""Collection into immutable snapshots: unchanged sources write nothing, new data does."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from aigc.config import FolderSource, HttpSource
from aigc.data.records import text_id
from aigc.data.snapshots import latest_snapshot, read_snapshot, write_snapshot
from aigc.data.sources.base import SourceError
from aigc.text.collect import collect_sources
from tests.http_fixture import ScriptedServer

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


def test_redirected_records_keep_the_url_they_came_from_in_the_raw_snapshot(tmp_path):
    with ScriptedServer() as server, ScriptedServer() as cdn:
        server.route("/api", (302, b"", {"Location": cdn.url + "/feed"}))
        cdn.route("/feed", page("one", "two"))
        source = HttpSource(
            name="api", url=server.url + "/api", pagination="none", allow_redirects_to=(cdn.url,)
        )
        frame = collect_sources([source], tmp_path, now=T1).frame
    assert frame["uri"].tolist() == [cdn.url + "/feed#0", cdn.url + "/feed#1"]
    meta = json.loads(frame["meta"].iloc[0])
    assert meta == {"url": cdn.url + "/feed", "requested_url": server.url + "/api"}


# --- failures keep the last good records ------------------------------------------------


def page(*texts: str) -> tuple[int, bytes]:
    return 200, json.dumps({"items": [{"text": text} for text in texts]}).encode()


def api(server: ScriptedServer, **changes) -> HttpSource:
    settings = {"backoff_seconds": 0, "on_error": "skip", **changes}
    return HttpSource(name="api", url=server.url + "/api", **settings)


def test_a_skipped_http_source_failing_on_page_3_keeps_its_previous_records(tmp_path):
    with ScriptedServer() as server:
        server.route("/api?page=1", page("one"))
        server.route("/api?page=2", page("two"))
        server.route("/api?page=3", page("three"))
        server.route("/api?page=4", page())
        first = collect_sources([api(server)], tmp_path, now=T1)
        server.route("/api?page=1", page("one, edited"))
        server.route("/api?page=3", (500, b"down"))
        second = collect_sources([api(server)], tmp_path, now=T2, previous=first.frame)
    assert sorted(first.frame["text"]) == ["one", "three", "two"]
    pd.testing.assert_frame_equal(second.frame, first.frame)  # unchanged, times included
    (report,) = second.report["sources"]
    assert (report["records"], report["carried_forward"], report["partial_dropped"]) == (0, 3, 2)
    assert "'api'" in report["errors"][0] and "page=3" in report["errors"][0]
    assert second.report["records"] == 3


def test_a_skipped_source_failing_without_a_previous_snapshot_reports_what_it_dropped(
    tmp_path,
):
    inbox = inbox_with(tmp_path, **{"a.txt": "a document in the inbox"})
    with ScriptedServer() as server:
        server.route("/api?page=1", page("one"))
        server.route("/api?page=2", (404, b"gone"))
        collection = collect_sources([inbox, api(server)], tmp_path, now=T1)
    assert collection.frame["text"].tolist() == ["a document in the inbox"]
    report = collection.report["sources"][1]
    assert (report["records"], report["carried_forward"], report["partial_dropped"]) == (0, 0, 1)


def test_a_folder_file_that_fails_keeps_its_previous_records_and_others_are_read(tmp_path):
    source = inbox_with(tmp_path, **{"t.csv": "text\nrow one\nrow two\n", "a.txt": "first"})
    source = FolderSource(name="inbox", path="inbox", on_error="skip")
    first = collect_sources([source], tmp_path, now=T1)
    inbox_with(tmp_path, **{"t.csv": "body\nrow one\n", "a.txt": "first, edited"})
    second = collect_sources([source], tmp_path, now=T2, previous=first.frame)
    texts = dict(zip(second.frame["text"], second.frame["collected_at"], strict=True))
    assert texts == {
        "first, edited": "2026-01-02T03:00:00Z",
        "row one": "2026-01-01T03:00:00Z",
        "row two": "2026-01-01T03:00:00Z",
    }
    (report,) = second.report["sources"]
    assert (report["records"], report["carried_forward"], report["partial_dropped"]) == (1, 2, 0)
    assert "t.csv" in report["errors"][0]


def test_a_failing_source_with_fail_raises_even_with_records_to_carry_forward(tmp_path):
    with ScriptedServer() as server:
        server.route("/api?page=1", page("one"))
        server.route("/api?page=2", page())
        first = collect_sources([api(server, on_error="fail")], tmp_path, now=T1)
        server.route("/api?page=1", (503, b"busy"))
        with pytest.raises(SourceError, match="'api'.*gave up after 2 attempts"):
            collect_sources([api(server, on_error="fail")], tmp_path, T2, first.frame)


# --- nothing collected ------------------------------------------------------------------


def test_an_empty_inbox_as_the_only_source_says_nothing_was_collected(tmp_path):
    (tmp_path / "inbox").mkdir()
    source = FolderSource(name="inbox", path="inbox")
    with pytest.raises(SourceError) as error:
        collect_sources([source], tmp_path, now=T1)
    message = str(error.value)
    assert message.startswith("nothing was collected")
    assert "'inbox'" in message and str((tmp_path / "inbox").resolve()) in message
    assert "Fix:" in message and "collect.sources" in message


def test_every_source_skipped_with_a_previous_snapshot_carries_all_forward(tmp_path):
    with ScriptedServer() as server:
        server.route("/api?page=1", page("one"))
        server.route("/api?page=2", page())
        first = collect_sources([api(server)], tmp_path, now=T1)
    dead = api(server)  # the server is gone: connection refused, not retried
    second = collect_sources([dead], tmp_path, now=T2, previous=first.frame)
    pd.testing.assert_frame_equal(second.frame, first.frame)
    assert second.report["sources"][0]["carried_forward"] == 1


def test_every_source_skipped_without_a_previous_snapshot_names_each_failure(tmp_path):
    dead = HttpSource(name="dead", url="http://127.0.0.1:9/", on_error="skip", timeout_seconds=1)
    inbox = FolderSource(name="inbox", path="inbox", on_error="skip", missing_ok=False)
    with pytest.raises(SourceError) as error:
        collect_sources([dead, inbox], tmp_path, now=T1)
    message = str(error.value)
    assert message.startswith("nothing was collected")
    assert "'dead'" in message and "cannot connect" in message
    assert "'inbox'" in message and "is not a directory" in message
