"""The `http` source: a paginated JSON or JSON-lines HTTP API.

Pagination (`pagination`):
- `page`: `?{page_param}=N` from `first_page`, until a page has no records;
- `cursor`: `?{cursor_param}=C`, C read from the JSON response's `next_cursor_field`, until it
  is empty (JSON format only);
- `none`: a single request.
In `json` format a page is an object whose `records_field` holds a list (or a bare list); in
`jsonl` format a page is one JSON object per line. Each item's `text_field` is the text and
its other scalar fields become metadata. A line or item that does not parse or lacks the
field is kept as a record flagged `malformed_json` / `missing_field` (quarantined by clean).

Retries: 5xx, 429 and timeouts/connection errors are retried up to `retries` times with
exponential backoff and full jitter (429's Retry-After is honoured). Any other 4xx fails at
once with a SourceError naming the source and the URL.
"""

from __future__ import annotations

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
    for _ in range(source.max_pages):
        url = _page_url(source, page, cursor)
        body = fetch(source, url, sleep)
        records, cursor = _parse_page(source, url, body)
        yield from records
        if source.pagination == "none" or not records:
            return
        if source.pagination == "cursor" and not cursor:
            return
        page += 1
    raise SourceError(
        source.name,
        source.url,
        f"still returning records after max_pages={source.max_pages}",
        "raise `max_pages` for this source if the API really has that many pages",
    )


def _page_url(source: HttpSource, page: int, cursor: str | None) -> str:
    parts = urllib.parse.urlsplit(source.url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    if source.pagination == "page":
        query.append((source.page_param, str(page)))
    elif source.pagination == "cursor" and cursor:
        query.append((source.cursor_param, cursor))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def fetch(source: HttpSource, url: str, sleep: Callable[[float], None] = time.sleep) -> bytes:
    """GET `url`, retrying what may pass (5xx, 429, time-outs); fail at once on other 4xx."""
    request = urllib.request.Request(url, headers={"Accept": "application/json", **source.headers})
    last_problem = ""
    for attempt in range(source.retries + 1):
        retry_after: float | None = None
        try:
            with urllib.request.urlopen(request, timeout=source.timeout_seconds) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            if error.code not in RETRYABLE_STATUS:
                raise SourceError(
                    source.name,
                    url,
                    f"HTTP {error.code} {error.reason}",
                    "check the URL and credentials (`url`, `headers`) of this source; "
                    "client errors are not retried",
                ) from None
            last_problem = f"HTTP {error.code} {error.reason}"
            retry_after = _retry_after_seconds(error.headers.get("Retry-After"))
        except (TimeoutError, urllib.error.URLError, ConnectionError) as error:
            reason = getattr(error, "reason", error)
            last_problem = f"no answer ({reason})"
        if attempt < source.retries:
            sleep(retry_after if retry_after is not None else _backoff(source, attempt))
    raise SourceError(
        source.name,
        url,
        f"gave up after {source.retries + 1} attempts; last: {last_problem}",
        "check that the server is up, or raise `retries` / `timeout_seconds`",
    )


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
