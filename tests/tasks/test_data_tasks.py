"""The data tasks through `task.fn()` on bad inputs: every record is accounted for.

Each problem file in a folder source, and each bad line of a live HTTP feed, ends up either
as a quarantine row with a reason or as a clear error naming the input and the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from prefect.logging import disable_run_logger

from aigc.config import load_params
from aigc.data.sources.base import SourceError
from aigc.paths import ProjectPaths
from aigc.stages.clean import clean as clean_stage
from aigc.text.modality import TEXT
from tasks.collect import collect
from tests.http_fixture import Reply, ScriptedServer

GOOD = "A socket server accepts a connection from each client and reads its request. " * 2


def configure(project: Path, sources: list[dict]) -> None:
    path = project / "params.yaml"
    data = yaml.safe_load(path.read_text())
    data["collect"] = {"sources": sources}
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def fates(project: Path) -> pd.DataFrame:
    """rule (or 'clean') per uri after collect + clean."""
    paths = ProjectPaths.at(project)
    clean_stage(paths, load_params(paths.params), TEXT)
    where = paths.data(TEXT.data)
    kept = pd.read_parquet(where.clean / "records.parquet").assign(rule="clean")
    quarantine = pd.read_parquet(where.clean / "quarantine.parquet")
    return pd.concat([kept[["uri", "rule"]], quarantine[["uri", "rule", "detail"]]])


def test_bad_folder_files_become_quarantine_rows(project: Path):
    inbox = project / "data" / "bad"
    inbox.mkdir()
    (inbox / "good.txt").write_text(GOOD)
    (inbox / "image.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 4)
    (inbox / "mangled.txt").write_bytes(bytes(range(128, 256)) * 8)
    (inbox / "empty.md").write_text("")
    (inbox / "one-line.txt").write_text("word " * (1024 * 1024))
    (inbox / "latin1.txt").write_bytes(("Un caf\u00e9 cr\u00e8me. " + GOOD).encode("latin-1"))
    configure(project, [{"name": "bad", "type": "folder", "path": "data/bad"}])
    with disable_run_logger():
        collected = collect.fn(project, load_params(project / "params.yaml"))
    assert collected.snapshot.records == 6
    result = fates(project)
    by_file = {row.uri.rsplit("/", 1)[-1]: row.rule for row in result.itertuples()}
    assert by_file == {
        "good.txt": "clean",
        "image.txt": "flagged",
        "mangled.txt": "flagged",  # invalid UTF-8: U+FFFD never reaches the training text
        "latin1.txt": "flagged",
        "empty.md": "length",
        "one-line.txt": "length",
    }
    details = result.set_index("uri")["detail"].dropna()
    assert {uri.rsplit("/", 1)[-1]: detail for uri, detail in details.items()}["latin1.txt"] == (
        "invalid_utf8"
    )
    assert (project / "data" / "raw.dvc").exists(), "collect must version the raw data"


def test_csv_without_the_column_fails_or_is_skipped_by_policy(project: Path):
    inbox = project / "data" / "tables"
    inbox.mkdir()
    (inbox / "table.csv").write_text("title,body\nfirst,second\n")
    (inbox / "notes.txt").write_text(GOOD)
    source = {"name": "tables", "type": "folder", "path": "data/tables"}
    configure(project, [source])
    with disable_run_logger(), pytest.raises(SourceError) as error:
        collect.fn(project, load_params(project / "params.yaml"))
    assert "table.csv" in str(error.value) and "csv_column" in str(error.value)

    configure(project, [{**source, "on_error": "skip"}])
    with disable_run_logger():
        collected = collect.fn(project, load_params(project / "params.yaml"))
    (report,) = collected.report["sources"]
    assert report["records"] == 1 and "table.csv" in report["errors"][0]
    written = json.loads(collected.snapshot.path.with_suffix(".report.json").read_text())
    assert "table.csv" in written["sources"][0]["errors"][0]


def test_http_feed_with_a_500_and_malformed_lines(project: Path):
    feed = json.dumps({"text": GOOD}) + "\n{not json\n" + json.dumps({"body": "x"}) + "\n"
    with ScriptedServer() as server:
        server.route("/feed", (500, b"busy"), (200, feed.encode()))
        configure(
            project,
            [
                {
                    "name": "feed",
                    "type": "http",
                    "url": server.url + "/feed",
                    "format": "jsonl",
                    "pagination": "none",
                    "backoff_seconds": 0.01,
                }
            ],
        )
        with disable_run_logger():
            collected = collect.fn(project, load_params(project / "params.yaml"))
    assert len(server.requests) == 2
    assert collected.snapshot.records == 3
    result = fates(project)
    assert sorted(result["rule"]) == ["clean", "flagged", "flagged"]
    assert set(result["detail"].dropna()) == {"malformed_json", "missing_field"}


def http_source(server: ScriptedServer, **changes) -> dict:
    return {
        "name": "feed",
        "type": "http",
        "url": server.url + "/feed",
        "format": "jsonl",
        "pagination": "none",
        "backoff_seconds": 0.01,
        **changes,
    }


def test_a_failing_source_with_fail_writes_nothing(project: Path):
    feed = (json.dumps({"text": GOOD}) + "\n").encode()
    raw = ProjectPaths.at(project).data(TEXT.data).raw
    with ScriptedServer() as server:
        server.route("/feed", (200, feed), (500, b"down"))
        configure(project, [http_source(server)])
        with disable_run_logger():
            first = collect.fn(project, load_params(project / "params.yaml"))
        before = {path.name: path.read_bytes() for path in raw.iterdir()}
        with disable_run_logger(), pytest.raises(SourceError, match="'feed'.*2 attempts"):
            collect.fn(project, load_params(project / "params.yaml"))
    assert first.snapshot.new and first.snapshot.records == 1
    assert {path.name: path.read_bytes() for path in raw.iterdir()} == before


def test_a_cut_off_body_with_skip_is_reported_and_the_last_records_kept(project: Path):
    feed = (json.dumps({"text": GOOD}) + "\n").encode()
    cut_off = Reply(body=feed[:20], content_length=len(feed))
    with ScriptedServer() as server:
        server.route("/feed", (200, feed), cut_off)
        configure(project, [http_source(server, on_error="skip")])
        with disable_run_logger():
            first = collect.fn(project, load_params(project / "params.yaml"))
            second = collect.fn(project, load_params(project / "params.yaml"))
    assert len(server.requests) == 3  # the cut-off body was retried once
    (report,) = second.report["sources"]
    assert "'feed'" in report["errors"][0] and "cut off" in report["errors"][0]
    assert report["carried_forward"] == 1
    assert not second.snapshot.new and second.snapshot.path == first.snapshot.path
