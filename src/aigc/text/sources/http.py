"""The `http` source: a paginated JSON or JSON-lines HTTP API.

Pagination (`pagination`):
- `page`: `?{page_param}=N` from `first_page`, until a page has no records;
- `cursor`: `?{cursor_param}=C`, C read from the JSON response's `next_cursor_field`, until it
  is empty (JSON format only);
- `none`: a single request.
A cursor seen before, a page holding the same records as an earlier one (an API that
ignores the page parameter), or two pages redirected to the same URL, is a loop: it stops
with a SourceError naming it.
In `json` format a page is an object whose `records_field` holds a list (or a bare list); in
`jsonl` format a page is one JSON object per line. Each item's `text_field` is the text and
its other scalar fields become metadata. A line or item that does not parse or lacks the
field is kept as a record flagged `malformed_json` / `missing_field` (quarantined by clean).
A record's uri is the URL its page finally came from (`#index` appended); its metadata holds
that `url` and, when a redirect led there, the `requested_url`.

Each page is fetched by `aigc.data.sources.fetch`: http(s) only, retries of transient
failures, one deadline per attempt, a size limit, redirects only where allowed.
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.parse
from collections.abc import Callable, Iterator

from aigc.config import HttpSource
from aigc.data.sources.base import SourceError, SourceRecord
from aigc.data.sources.fetch import fetch
from aigc.text.sources.folder import decode, json_item_record, json_line_record


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
    landed: dict[str, str] = {}  # URL a page came from -> the URL requested
    for _ in range(source.max_pages):
        url = _page_url(source, page, cursor)
        body, final_url = fetch(source, url, sleep)
        if final_url in landed:
            raise SourceError(
                source.name,
                url,
                f"redirected to {final_url}, as {landed[final_url]} was: pagination loops",
                "check `url` and the pagination settings of this source",
            )
        landed[final_url] = url
        records, cursor = _parse_page(source, url, final_url, body)
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


_PROVENANCE = ("url", "requested_url")


def _fingerprint(records: list[SourceRecord]) -> str:
    """What a page holds, without where it came from (the URL differs from page to page)."""
    content = [
        [record.text, {k: v for k, v in record.meta.items() if k not in _PROVENANCE}]
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


def _parse_page(
    source: HttpSource, url: str, final_url: str, body: bytes
) -> tuple[list[SourceRecord], str]:
    """(records, next cursor) of a page requested at `url` that came from `final_url`."""
    text, flags = decode(body)
    meta = {"url": final_url} | ({"requested_url": url} if final_url != url else {})
    if source.format == "jsonl":
        records = [
            json_line_record(line, f"{final_url}#{index}", source.text_field, meta, flags)
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
        json_item_record(item, f"{final_url}#{index}", source.text_field, meta, flags)
        for index, item in enumerate(items)
    ]
    return records, str(cursor) if cursor else ""
