"""The http source against hostile servers: redirects, other schemes, dripping headers, a
Retry-After of an hour, a body too large. Every server is real, on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
import tracemalloc
from pathlib import Path

import pydantic
import pytest
import yaml

from aigc.config import ConfigError, HttpSource, load_params
from aigc.data.sources.base import SourceError
from aigc.text.sources.http import read_http
from tests.http_fixture import Reply, ScriptedServer

CREDENTIALS = {"Authorization": "Bearer s3cret", "X-Api-Key": "key-42"}


def no_sleep(seconds: float) -> None:
    pass


def page(*texts: str) -> bytes:
    return json.dumps({"items": [{"text": text} for text in texts]}).encode()


def single(url: str, **settings) -> HttpSource:
    return HttpSource(name="api", url=url, pagination="none", headers=CREDENTIALS, **settings)


# --- schemes -------------------------------------------------------------------------------


def test_a_file_url_is_a_config_error_naming_the_source(tmp_path: Path):
    with pytest.raises(pydantic.ValidationError, match="source 'etc'.*not an http"):
        HttpSource(name="etc", url="file:///etc/passwd")
    params = tmp_path / "params.yaml"
    source = {"name": "etc", "type": "http", "url": "file:///etc/passwd"}
    params.write_text(yaml.safe_dump({"collect": {"sources": [source]}}))
    with pytest.raises(ConfigError) as error:
        load_params(params)
    assert "source 'etc'" in str(error.value) and "'file:///etc/passwd'" in str(error.value)
    assert "folder" in str(error.value), "says where local files go instead"


def test_allow_redirects_to_takes_origins_only():
    assert HttpSource(name="a", url="https://x.org/api", allow_redirects_to=("https://c.org",))
    for entry in ("https://c.org/path", "ftp://c.org", "c.org", "https://c.org:port"):
        with pytest.raises(pydantic.ValidationError, match="source 'a'.*not an origin"):
            HttpSource(name="a", url="https://x.org/api", allow_redirects_to=(entry,))


def test_a_file_url_is_refused_at_run_time_too():
    source = HttpSource.model_construct(
        **{**single("https://x.org").__dict__, "url": "file:///etc/passwd"}
    )
    with pytest.raises(SourceError, match="source 'api'.*file scheme.*not retried"):
        list(read_http(source, sleep=no_sleep))


# --- redirects -----------------------------------------------------------------------------


def test_a_redirect_to_another_origin_is_refused_before_any_request_goes_there():
    with ScriptedServer() as api, ScriptedServer() as elsewhere:
        api.route("/api", (302, b"", {"Location": elsewhere.url + "/steal"}))
        elsewhere.route("/steal", (200, page("taken")))
        with pytest.raises(SourceError) as error:
            list(read_http(single(api.url + "/api"), sleep=no_sleep))
    message = str(error.value)
    assert elsewhere.requests == [], "nothing, credentials least of all, went to the other host"
    assert "'api'" in message and f"HTTP 302 redirect to {elsewhere.url}/steal" in message
    assert "allow_redirects_to" in message and elsewhere.url in message


def test_an_allowed_redirect_is_followed_without_credentials_and_recorded():
    with ScriptedServer() as api, ScriptedServer() as cdn:
        api.route("/api", (302, b"", {"Location": cdn.url + "/pages/1.json"}))
        cdn.route("/pages/1.json", (200, page("first", "second")))
        source = single(api.url + "/api", allow_redirects_to=(cdn.url,))
        records = list(read_http(source, sleep=no_sleep))
    assert [record.text for record in records] == ["first", "second"]
    assert [record.uri for record in records] == [
        f"{cdn.url}/pages/1.json#0",
        f"{cdn.url}/pages/1.json#1",
    ]
    assert records[0].meta == {"url": cdn.url + "/pages/1.json", "requested_url": api.url + "/api"}
    assert api.headers[0]["Authorization"] == "Bearer s3cret"
    sent = {name.lower() for name in cdn.headers[0]}
    assert "authorization" not in sent and "x-api-key" not in sent


def test_a_same_origin_redirect_keeps_credentials_and_records_the_final_url():
    with ScriptedServer() as api:
        api.route("/old", (301, b"", {"Location": "/new"}))
        api.route("/new", (200, page("moved")))
        (record,) = read_http(single(api.url + "/old"), sleep=no_sleep)
    assert api.requests == ["/old", "/new"]
    assert [headers["Authorization"] for headers in api.headers] == ["Bearer s3cret"] * 2
    assert record.uri == api.url + "/new#0" and record.meta["requested_url"] == api.url + "/old"


def test_a_redirect_to_a_file_is_refused_even_with_other_origins_allowed():
    with ScriptedServer() as api:
        api.route("/api", (302, b"", {"Location": "file:///etc/passwd"}))
        source = single(api.url + "/api", allow_redirects_to=("http://127.0.0.1:1",))
        with pytest.raises(SourceError, match="'api'.*file scheme"):
            list(read_http(source, sleep=no_sleep))


def test_pages_redirected_to_the_same_url_are_a_loop():
    with ScriptedServer() as api:
        api.route("/api", (302, b"", {"Location": "/latest"}))
        api.route("/latest", (200, page("a")), (200, page("b")))
        source = HttpSource(name="api", url=api.url + "/api", max_pages=10)
        with pytest.raises(SourceError, match="redirected to .*/latest, as .*page=1 was"):
            list(read_http(source, sleep=no_sleep))


# --- time ----------------------------------------------------------------------------------


def test_a_server_dripping_its_headers_is_cut_at_timeout_seconds():
    # 0.2 s a byte: each read returns well within the socket's own timeout, so only a deadline
    # on the whole attempt can stop it (the headers alone would take about 25 s).
    with ScriptedServer() as server:
        server.route("/api", Reply(body=page("late"), header_drip_seconds=0.2))
        source = single(server.url + "/api", timeout_seconds=1, retries=0)
        started = time.monotonic()
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
        elapsed = time.monotonic() - started
    assert elapsed < 2, f"held {elapsed:.1f} s"
    message = str(error.value)
    assert "no complete answer within timeout_seconds=1" in message and "headers" in message


def test_retry_after_is_capped_at_backoff_max_seconds_and_says_so(caplog):
    slept = []
    with ScriptedServer() as server:
        server.route("/api", (429, b"", {"Retry-After": "3600"}), (200, page("ok")))
        source = single(server.url + "/api", backoff_max_seconds=2)
        with caplog.at_level(logging.WARNING, logger="aigc.data.sources.fetch"):
            assert [record.text for record in read_http(source, sleep=slept.append)] == ["ok"]
    assert slept == [2.0]
    (logged,) = caplog.records
    assert "'api'" in logged.getMessage() and "3600s (Retry-After)" in logged.getMessage()
    assert "backoff_max_seconds=2s" in logged.getMessage()


# --- size ----------------------------------------------------------------------------------


def test_a_body_announced_over_max_response_bytes_is_one_clear_error_not_retried():
    with ScriptedServer() as server:
        server.route("/api", (200, page("x" * 5000)))
        source = single(server.url + "/api", max_response_bytes=1000)
        with pytest.raises(SourceError) as error:
            list(read_http(source, sleep=no_sleep))
    message = str(error.value)
    assert "\n" not in message and message.startswith("source 'api': ")
    assert "larger than max_response_bytes=1000" in message and "not retried" in message
    assert "raise `max_response_bytes`" in message
    assert len(server.requests) == 1


def test_a_body_without_a_length_is_read_no_further_than_the_limit():
    limit = 256 * 1024
    body = b"x" * (16 * 1024 * 1024)  # 16 MB, chunked: no Content-Length to refuse it by
    with ScriptedServer() as server:
        server.route("/api", Reply(body=body, chunked=True))
        source = single(server.url + "/api", max_response_bytes=limit)
        tracemalloc.start()
        try:
            with pytest.raises(SourceError, match="larger than max_response_bytes=262144"):
                list(read_http(source, sleep=no_sleep))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 4 * 1024 * 1024, f"{peak} bytes held for a {limit}-byte limit"


def test_the_default_limit_is_fifty_megabytes():
    assert HttpSource(name="a", url="https://x.org").max_response_bytes == 50 * 1024 * 1024


def test_the_proxy_of_the_environment_is_still_used(monkeypatch: pytest.MonkeyPatch):
    with ScriptedServer() as proxy:
        proxy.route("/api", (200, page("through the proxy")))
        for name in ("HTTP_PROXY", "http_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        source = single("http://api.example.invalid/api")
        (record,) = read_http(source, sleep=no_sleep)
    assert record.text == "through the proxy"
    assert proxy.requests == ["http://api.example.invalid/api"]
