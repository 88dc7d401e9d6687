"""The three source types on real inputs: stdlib files, a folder on disk, a live HTTP server."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from aigc.config import BuiltinSource, FolderSource, HttpSource
from aigc.data.sources.base import SourceError
from aigc.data.sources.folder import list_files
from aigc.text.sources.builtin import read_builtin, split_sections
from aigc.text.sources.folder import read_file
from aigc.text.sources.http import read_http
from tests.http_fixture import Reply, ScriptedServer


def no_sleep(seconds: float) -> None:
    pass


# --- builtin ---------------------------------------------------------------------------


def test_split_sections_cuts_at_underlined_headings():
    text = "Intro\n*****\n\nFirst part.\n\nDetails\n=======\n\nSecond part.\n"
    sections = split_sections(text)
    assert [title for title, _ in sections] == ["Intro", "Details"]
    assert sections[1][1].startswith("Details\n=======") and "Second part." in sections[1][1]


def test_builtin_topics_are_sections_with_module_metadata():
    records = list(read_builtin(BuiltinSource(name="stdlib", include=("topics",))))
    assert len(records) > 150
    assert len({record.uri for record in records}) == len(records)
    assert all(record.meta["module"] == "pydoc_data.topics" for record in records)
    assert any("assert" in record.text for record in records)


# --- folder ----------------------------------------------------------------------------


def folder_source(**changes) -> FolderSource:
    return FolderSource(name="inbox", path="inbox", **changes)


def test_folder_reads_text_markdown_jsonl_and_csv(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "nested").mkdir(parents=True)
    (inbox / "a.txt").write_text("plain text document")
    (inbox / "nested" / "b.md").write_text("# markdown\n\nbody")
    (inbox / "c.jsonl").write_text('{"text": "line one", "lang": "en"}\n\n{"text": "line two"}\n')
    (inbox / "d.csv").write_text("title,text\nfirst,row one\nsecond,row two\n")
    (inbox / ".hidden.txt").write_text("skipped")
    (inbox / "e.bin").write_bytes(b"not a listed extension")
    source = folder_source()
    records = [
        record for path in list_files(source, tmp_path).files for record in read_file(source, path)
    ]
    texts = sorted(record.text for record in records)
    assert texts == sorted(
        ["plain text document", "# markdown\n\nbody", "line one", "line two", "row one", "row two"]
    )
    by_text = {record.text: record for record in records}
    assert by_text["line one"].meta["lang"] == "en"
    assert by_text["row two"].meta["title"] == "second"
    assert by_text["row two"].uri.endswith("d.csv#L3")


def test_folder_flags_binary_invalid_utf8_and_keeps_empty_and_huge_files(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "binary.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (inbox / "latin1.txt").write_bytes("caf\u00e9 cr\u00e8me br\u00fbl\u00e9e".encode("latin-1"))
    (inbox / "empty.txt").write_text("")
    (inbox / "huge.txt").write_text("x" * (5 * 1024 * 1024))
    source = folder_source()
    records = {
        record.uri.rsplit("/", 1)[-1]: record
        for path in list_files(source, tmp_path).files
        for record in read_file(source, path)
    }
    assert records["binary.txt"].flags == ("binary",)
    assert records["latin1.txt"].flags == ("invalid_utf8",)
    assert "\ufffd" in records["latin1.txt"].text
    assert records["empty.txt"].text == "" and records["empty.txt"].flags == ()
    assert len(records["huge.txt"].text) == 5 * 1024 * 1024


def test_invalid_utf8_flags_only_the_records_holding_a_replaced_byte(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    lines = ['{"text": "clean line"}', '{"text": "caf\u00e9 latin-1"}', '{"text": "also clean"}']
    data = "\n".join(lines).encode("utf-8").replace("caf\u00e9".encode(), b"caf\xe9")
    (inbox / "feed.jsonl").write_bytes(data)
    records = list(read_file(folder_source(), inbox / "feed.jsonl"))
    assert [record.flags for record in records] == [(), ("invalid_utf8",), ()]
    assert records[1].text == "caf\ufffd latin-1"


def test_folder_keeps_malformed_json_lines_as_flagged_records(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "feed.jsonl").write_text('{"text": "good"}\n{"text": broken\n{"body": "no text"}\n')
    source = folder_source()
    records = list(read_file(source, inbox / "feed.jsonl"))
    assert [record.flags for record in records] == [(), ("malformed_json",), ("missing_field",)]
    assert records[1].text == '{"text": broken'


def test_csv_without_the_column_is_a_clear_error(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "table.csv").write_text("title,body\na,b\n")
    source = folder_source()
    with pytest.raises(SourceError) as error:
        list(read_file(source, inbox / "table.csv"))
    message = str(error.value)
    assert "table.csv" in message and "'text'" in message and "['title', 'body']" in message
    assert "csv_column" in message


def test_folder_refuses_links_that_lead_outside_it_and_says_why(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("a secret outside the inbox")
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "real.txt").write_text("a document in the inbox")
    (inbox / "absolute.txt").symlink_to(outside / "secret.txt")
    (inbox / "sub" / "relative.txt").symlink_to(Path("..") / ".." / "outside" / "secret.txt")
    (inbox / "linked-dir").symlink_to(outside, target_is_directory=True)
    (inbox / "broken.txt").symlink_to(tmp_path / "nowhere.txt")
    if Path("/etc/passwd").is_file():
        (inbox / "passwd.txt").symlink_to("/etc/passwd")
    source = folder_source()
    listing = list_files(source, tmp_path)
    texts = [record.text for path in listing.files for record in read_file(source, path)]
    assert texts == ["a document in the inbox"]
    refused = {
        Path(item["path"]).relative_to(inbox.resolve()).as_posix(): item["reason"]
        for item in listing.refused
    }
    expected = {"absolute.txt", "broken.txt", "linked-dir", "sub/relative.txt"}
    assert set(refused) == expected | ({"passwd.txt"} if "passwd.txt" in refused else set())
    secret = str((outside / "secret.txt").resolve())
    assert (
        secret in refused["sub/relative.txt"] and "outside the folder" in refused["absolute.txt"]
    )
    assert (
        refused["linked-dir"]
        == f"symbolic link to directory {outside.resolve()}, outside the folder"
    )
    assert "broken" in refused["broken.txt"]


def test_folder_reads_a_file_linked_inside_it_once_under_its_real_path(tmp_path):
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / ".drafts").mkdir()
    (inbox / "a.txt").write_text("document a")
    (inbox / "alias.txt").symlink_to("a.txt")
    (inbox / "sub" / "b.txt").write_text("document b")
    (inbox / "sub-again").symlink_to("sub", target_is_directory=True)
    (inbox / "loop").symlink_to(".", target_is_directory=True)
    (inbox / ".drafts" / "c.txt").write_text("document c, published through a link")
    (inbox / "c.txt").symlink_to(Path(".drafts") / "c.txt")
    listing = list_files(folder_source(), tmp_path)
    real = inbox.resolve()
    assert [path.relative_to(real).as_posix() for path in listing.files] == [
        ".drafts/c.txt",
        "a.txt",
        "sub/b.txt",
    ]
    assert listing.refused == []


def test_folder_reads_a_listed_file_without_following_a_link_put_there_later(tmp_path):
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("document a")
    (tmp_path / "secret.txt").write_text("secret")
    (path,) = list_files(folder_source(), tmp_path).files
    os.replace(inbox / "a.txt", tmp_path / "a.txt")
    path.symlink_to(tmp_path / "secret.txt")  # swapped between listing and reading
    with pytest.raises(OSError):
        list(read_file(folder_source(), path))


def test_missing_folder_is_empty_unless_required(tmp_path):
    assert list_files(folder_source(), tmp_path).files == []
    with pytest.raises(SourceError, match="is not a directory"):
        list_files(folder_source(missing_ok=False), tmp_path)


# --- http ------------------------------------------------------------------------------


def page(items: list, **extra) -> bytes:
    return json.dumps({"items": items, **extra}).encode()


def test_http_retries_a_500_then_reads_all_pages():
    with ScriptedServer() as server:
        server.route("/api?page=1", (500, b"oops"), (200, page([{"text": "one", "k": 1}])))
        server.route("/api?page=2", (200, page([{"text": "two"}])))
        server.route("/api?page=3", (200, page([])))
        source = HttpSource(name="api", url=server.url + "/api")
        records = list(read_http(source, sleep=no_sleep))
    assert [record.text for record in records] == ["one", "two"]
    assert records[0].meta["k"] == 1
    assert server.requests == ["/api?page=1", "/api?page=1", "/api?page=2", "/api?page=3"]


def test_http_honours_retry_after_on_429():
    slept = []
    with ScriptedServer() as server:
        server.route("/api", (429, b"slow down", {"Retry-After": "7"}), (200, page([])))
        source = HttpSource(name="api", url=server.url + "/api", pagination="none")
        assert list(read_http(source, sleep=slept.append)) == []
    assert slept == [7.0]


def test_http_404_fails_at_once_naming_source_and_url():
    with ScriptedServer() as server:
        server.route("/missing", (404, b"nope"))
        source = HttpSource(name="api", url=server.url + "/missing")
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
    assert len(server.requests) == 1
    assert "'api'" in str(error.value) and "/missing?page=1" in str(error.value)
    assert "HTTP 404" in str(error.value) and "after 1 attempt" in str(error.value)


def test_http_gives_up_after_retries_with_the_last_problem():
    with ScriptedServer() as server:
        server.route("/down", (503, b"unavailable"))
        source = HttpSource(name="api", url=server.url + "/down", retries=2)
        with pytest.raises(SourceError, match="gave up after 3 attempts; last: HTTP 503"):
            list(read_http(source, sleep=no_sleep))
    assert len(server.requests) == 3


def test_http_jsonl_keeps_malformed_lines_flagged():
    body = b'{"text": "fine"}\nthis is not json\n{"other": 1}\n'
    with ScriptedServer() as server:
        server.route("/feed", (200, body))
        source = HttpSource(
            name="feed", url=server.url + "/feed", format="jsonl", pagination="none"
        )
        records = list(read_http(source, sleep=no_sleep))
    assert [record.flags for record in records] == [(), ("malformed_json",), ("missing_field",)]


def test_http_cursor_pagination_follows_the_cursor():
    with ScriptedServer() as server:
        server.route("/c", (200, page([{"text": "a"}], next_cursor="xyz")))
        server.route("/c?cursor=xyz", (200, page([{"text": "b"}], next_cursor=None)))
        source = HttpSource(name="c", url=server.url + "/c", pagination="cursor")
        assert [record.text for record in read_http(source, sleep=no_sleep)] == ["a", "b"]


def test_http_always_500_gets_exactly_retries_plus_one_requests():
    with ScriptedServer() as server:
        server.route("/down", (500, b"broken"))
        source = HttpSource(name="api", url=server.url + "/down", pagination="none")
        assert source.retries == 1  # one retry by default: retries live here, at one level
        with pytest.raises(SourceError, match="gave up after 2 attempts; last: HTTP 500"):
            list(read_http(source, sleep=no_sleep))
    assert len(server.requests) == 2


def test_http_error_after_a_retry_says_how_many_attempts_were_made():
    with ScriptedServer() as server:
        server.route("/api", (503, b"busy"), (403, b"forbidden"))
        source = HttpSource(name="api", url=server.url + "/api", pagination="none")
        with pytest.raises(SourceError, match="HTTP 403 .*after 2 attempts"):
            list(read_http(source, sleep=no_sleep))
    assert len(server.requests) == 2


def test_http_cut_off_body_is_retried_then_read():
    body = page([{"text": "whole"}])
    with ScriptedServer() as server:
        server.route("/api", Reply(body=body[:10], content_length=len(body)), (200, body))
        source = HttpSource(name="api", url=server.url + "/api", pagination="none")
        records = list(read_http(source, sleep=no_sleep))
    assert [record.text for record in records] == ["whole"]
    assert len(server.requests) == 2


def test_http_body_always_cut_off_is_a_source_error_naming_source_and_url():
    body = page([{"text": "whole"}])
    with ScriptedServer() as server:
        server.route("/api", Reply(body=body[:10], content_length=len(body)))
        source = HttpSource(name="api", url=server.url + "/api", pagination="none")
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
    message = str(error.value)
    assert "'api'" in message and server.url + "/api" in message
    assert "gave up after 2 attempts" in message and "cut off" in message
    assert len(server.requests) == 2


def test_http_timeout_bounds_the_whole_request_not_each_read():
    body = page([{"text": "x" * 200}])  # about 220 bytes at 20 per second: 11 s in all
    with ScriptedServer() as server:
        server.route("/slow", Reply(body=body, drip_seconds=0.05))
        source = HttpSource(
            name="slow", url=server.url + "/slow", pagination="none", timeout_seconds=0.5
        )
        started = time.monotonic()
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
        elapsed = time.monotonic() - started
    attempts = source.retries + 1
    assert len(server.requests) == attempts  # a time-out is transient: retried
    assert elapsed < 3 * source.timeout_seconds * attempts
    assert "timeout_seconds=0.5" in str(error.value) and "'slow'" in str(error.value)


def test_http_cursor_cycle_stops_naming_the_repeated_cursor():
    with ScriptedServer() as server:
        server.route("/c", (200, page([{"text": "a"}], next_cursor="one")))
        server.route("/c?cursor=one", (200, page([{"text": "b"}], next_cursor="two")))
        server.route("/c?cursor=two", (200, page([{"text": "c"}], next_cursor="one")))
        source = HttpSource(name="c", url=server.url + "/c", pagination="cursor", max_pages=50)
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
    assert len(server.requests) == 3
    assert "'c'" in str(error.value) and "cursor 'one'" in str(error.value)


def test_http_page_parameter_ignored_by_the_api_stops_at_the_first_repeat():
    with ScriptedServer() as server:
        server.route("/same", (200, page([{"text": "always the same"}])))  # any ?page=N
        source = HttpSource(name="same", url=server.url + "/same", max_pages=50)
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
    assert len(server.requests) == 2
    assert "'same'" in str(error.value) and "same records as" in str(error.value)


def test_builtin_source_is_cached_by_what_determines_it(tmp_path, monkeypatch):
    import ast

    from aigc.text.sources import builtin

    source = BuiltinSource(name="stdlib", include=("topics",))
    first = list(builtin.read_builtin(source, tmp_path))
    assert len(list(tmp_path.glob("builtin-*.json"))) == 1

    def no_parsing(*args, **kwargs):
        raise AssertionError("an unchanged installation must not be parsed again")

    monkeypatch.setattr(ast, "parse", no_parsing)
    monkeypatch.setattr(builtin, "split_sections", no_parsing)
    assert list(builtin.read_builtin(source, tmp_path)) == first
    monkeypatch.undo()
    other = BuiltinSource(name="stdlib", include=("topics",), exclude_packages=("email",))
    assert builtin._cache_key(other) != builtin._cache_key(source), "settings are in the key"
