"""The `http` source: a paginated JSON or JSON-lines HTTP API.

Pagination (`pagination`):
- `page`: `?{page_param}=N` from `first_page`, until a page has no records;
- `cursor`: `?{cursor_param}=C`, C read from the JSON response's `next_cursor_field`, until it
  is empty (JSON format only);
- `none`: a single request.
A cursor seen before, or a page holding the same records as an earlier one (an API that
ignores the page parameter), is a loop: it stops with a SourceError naming it.
In `json` format a page is an object whose `records_field` holds a list (or a bare list); in
`jsonl` format a page is one JSON object per line. Each item's `text_field` is the text and
its other scalar fields become metadata. A line or item that does not parse or lacks the
field is kept as a record flagged `malformed_json` / `missing_field` (quarantined by clean).

`timeout_seconds` bounds each request as a whole, not each socket read: the body is read in
chunks and abandoned once the deadline has passed (one stalled read can add at most another
`timeout_seconds`). Retries happen here and nowhere else: only transient failures (HTTP 500,
502, 503, 504, 429, time-outs, a reset connection, a cut-off body) are retried, `retries`
times, with exponential backoff and full jitter (429's Retry-After is honoured). Anything
else (other 4xx, a refused connection, an unknown host) fails at once. Every SourceError
says how many attempts were made.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator

from aigc.config import HttpSource
from aigc.data.sources.base import SourceError, SourceRecord
from aigc.data.sources.folder import decode, json_item_record, json_line_record

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_CHUNK_BYTES = 64 * 1024


def read_http(
    source: HttpSource, sleep: Callable[[float], None] = time.sleep
) -> Iterator[SourceRecord]:
    if source.pagination == "cursor" and source.format != "json":
        raise SourceError(
            source.name,
            source.url,
            "cursor pagination needs format: json",
            "set `format: json` or `pagination: page`",
        )
    page, cursor = source.first_page, None
    followed: set[str] = set()
    pages_seen: dict[str, str] = {}  # fingerprint of a page's records -> its URL
    for _ in range(source.max_pages):
        url = _page_url(source, page, cursor)
        body = fetch(source, url, sleep)
        records, cursor = _parse_page(source, url, body)
        if records and source.pagination != "none":
            fingerprint = _fingerprint(records)
            if fingerprint in pages_seen:
                raise SourceError(
                    source.name,
                    url,
                    f"returned the same records as {pages_seen[fingerprint]}: pagination loops",
                    f"check `pagination` and `{source.pagination}_param` of this source "
                    "against the API's documentation",
                )
            pages_seen[fingerprint] = url
        yield from records
        if source.pagination == "none" or not records:
            return
        if source.pagination == "cursor":
            if not cursor:
                return
            if cursor in followed:
                raise SourceError(
                    source.name,
                    url,
                    f"next cursor {cursor!r} was already followed: pagination loops",
                    f"check `next_cursor_field` ({source.next_cursor_field!r}) of this source",
                )
            followed.add(cursor)
        page += 1
    raise SourceError(
        source.name,
        source.url,
        f"still returning records after max_pages={source.max_pages}",
        "raise `max_pages` for this source if the API really has that many pages",
    )


def _fingerprint(records: list[SourceRecord]) -> str:
    """What a page holds, without where it came from (the URL differs from page to page)."""
    content = [
        [record.text, {key: value for key, value in record.meta.items() if key != "url"}]
        for record in records
    ]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _page_url(source: HttpSource, page: int, cursor: str | None) -> str:
    parts = urllib.parse.urlsplit(source.url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if source.pagination == "page":
        query.append((source.page_param, str(page)))
    elif source.pagination == "cursor" and cursor:
        query.append((source.cursor_param, cursor))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


class _Failure(Exception):
    """One failed attempt: what happened, whether it may pass, and what to do if it won't."""

    def __init__(
        self, problem: str, transient: bool, fix: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.transient = transient
        self.fix = fix
        self.retry_after = retry_after


def fetch(source: HttpSource, url: str, sleep: Callable[[float], None] = time.sleep) -> bytes:
    """GET `url`, retrying transient failures; SourceError naming the attempts otherwise."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **source.headers})
    attempts = source.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return _get(request, source.timeout_seconds)
        except _Failure as failure:
            tried = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
            if not failure.transient:
                raise SourceError(
                    source.name, url, f"{failure.problem} ({tried}; not retried)", failure.fix
                ) from None
            if attempt == attempts:
                raise SourceError(
                    source.name,
                    url,
                    f"gave up {tried}; last: {failure.problem}",
                    "check that the server is up, or raise `retries` / `timeout_seconds`",
                ) from None
            pause = failure.retry_after
            sleep(pause if pause is not None else _backoff(source, attempt - 1))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _get(request: urllib.request.Request, timeout: float) -> bytes:
    """One attempt: the whole body within `timeout` seconds, or a _Failure."""
    deadline = time.monotonic() + timeout
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _read_body(response, deadline, timeout)
    except urllib.error.HTTPError as error:
        error.close()
        transient = error.code in RETRYABLE_STATUS
        raise _Failure(
            f"HTTP {error.code} {error.reason}",
            transient,
            "check the URL and credentials (`url`, `headers`) of this source",
            _retry_after_seconds(error.headers.get("Retry-After")) if transient else None,
        ) from None
    except http.client.IncompleteRead as error:
        raise _Failure(f"body cut off ({_incomplete(error)})", transient=True) from None
    except urllib.error.URLError as error:  # before the request was sent: connect, DNS
        reason = error.reason
        if isinstance(reason, TimeoutError | ConnectionResetError | ConnectionAbortedError):
            raise _Failure(f"no answer ({reason})", transient=True) from None
        raise _Failure(
            f"cannot connect ({reason})",
            transient=False,
            fix="check the host and port in `url` and that the server is up",
        ) from None
    except TimeoutError as error:
        raise _Failure(
            f"no answer within timeout_seconds={timeout:g} ({error})", transient=True
        ) from None
    except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as error:
        raise _Failure(f"connection lost ({error})", transient=True) from None
    except http.client.HTTPException as error:
        raise _Failure(
            f"answer is not valid HTTP ({error!r})",
            transient=False,
            fix="check that `url` points at an HTTP API",
        ) from None
    except OSError as error:
        raise _Failure(f"request failed ({error})", transient=False) from None


def _read_body(response: http.client.HTTPResponse, deadline: float, timeout: float) -> bytes:
    """The body in chunks, so a server that drips bytes cannot hold us past the deadline."""
    chunks = []
    while chunk := response.read1(_CHUNK_BYTES):
        chunks.append(chunk)
        if time.monotonic() > deadline:
            received = sum(map(len, chunks))
            problem = f"body not complete within timeout_seconds={timeout:g}"
            raise _Failure(f"{problem} ({received} bytes received)", transient=True)
    body = b"".join(chunks)
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and len(body) < int(announced):
        raise http.client.IncompleteRead(body, int(announced) - len(body))
    return body


def _incomplete(error: http.client.IncompleteRead) -> str:
    more = f", {error.expected} more expected" if error.expected is not None else ""
    return f"{len(error.partial)} bytes received{more}"


def _backoff(source: HttpSource, attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(source.backoff_max_seconds, source.backoff_seconds * 2**attempt)
    return random.uniform(0, ceiling)


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff


def _parse_page(source: HttpSource, url: str, body: bytes) -> tuple[list[SourceRecord], str]:
    text, flags = decode(body)
    meta = {"url": url}
    if source.format == "jsonl":
        records = [
            json_line_record(line, f"{url}#{index}", source.text_field, meta, flags)
            for index, line in enumerate(line for line in text.splitlines() if line.strip())
        ]
        return records, ""
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as error:
        raise SourceError(
            source.name,
            url,
            f"response is not JSON ({error.msg})",
            "set `format: jsonl` if the API answers one JSON object per line",
        ) from None
    items = payload if isinstance(payload, list) else payload.get(source.records_field)
    if not isinstance(items, list):
        keys = list(payload) if isinstance(payload, dict) else type(payload).__name__
        raise SourceError(
            source.name,
            url,
            f"response has no list in {source.records_field!r} (keys: {keys})",
            "set `records_field` of this source to the field holding the records",
        )
    cursor = payload.get(source.next_cursor_field) if isinstance(payload, dict) else None
    records = [
        json_item_record(item, f"{url}#{index}", source.text_field, meta, flags)
        for index, item in enumerate(items)
    ]
    return records, str(cursor) if cursor else ""
