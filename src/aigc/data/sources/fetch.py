"""One page of an `http` source: a GET with retries, a deadline, a size limit and safe redirects.

`fetch(source, url)` returns the body and the URL it finally came from. The rules, each for
an attack or an accident seen in practice:
- Only http:// and https:// are requested (file://, ftp:// and data: never are). Proxies
  come from the usual environment variables (`HTTP_PROXY`, `NO_PROXY`, ...).
- A redirect is followed only to the origin (scheme, host and port) of the source's `url`, or
  to one listed in `allow_redirects_to`; at most `MAX_REDIRECTS` hops. The source's
  `headers` (credentials: Authorization, API keys) go to the url's own origin only.
- `timeout_seconds` is one wall-clock deadline per attempt, covering connecting, the headers
  and the body across every redirect: when it passes, the socket is shut down, which ends a
  read however slowly the server drips bytes. (Name resolution is the system resolver's.)
- A body larger than `max_response_bytes` is an error, found from Content-Length or after
  reading one byte more than the limit, never more.
- Only transient failures (HTTP 500, 502, 503, 504, 429, time-outs, a reset connection, a
  cut-off body) are retried, `retries` times, with exponential backoff and full jitter; a
  server's Retry-After is honoured up to `backoff_max_seconds`. Anything else fails at once.
  Every SourceError says how many attempts were made.
"""

from __future__ import annotations

import contextlib
import functools
import http.client
import logging
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

from aigc.config import HTTP_SCHEMES, HttpSource, http_origin
from aigc.data.sources.base import SourceError

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 5
_CHUNK_BYTES = 64 * 1024


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


def fetch(
    source: HttpSource, url: str, sleep: Callable[[float], None] = time.sleep
) -> tuple[bytes, str]:
    """(body, final URL) of a GET of `url`, retrying transient failures; SourceError naming
    the attempts otherwise."""
    attempts = source.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return _attempt(source, url)
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
            sleep(_pause(source, url, failure, attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _pause(source: HttpSource, url: str, failure: _Failure, attempt: int) -> float:
    """The wait before the next attempt: the server's Retry-After, capped, or our backoff."""
    if failure.retry_after is None:
        return _backoff(source, attempt - 1)
    if failure.retry_after > source.backoff_max_seconds:
        logger.warning(
            "source %r: %s asked to retry after %gs (Retry-After); waiting "
            "backoff_max_seconds=%gs instead",
            source.name,
            url,
            failure.retry_after,
            source.backoff_max_seconds,
        )
        return source.backoff_max_seconds
    return failure.retry_after


def _backoff(source: HttpSource, attempt: int) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
    ceiling = min(source.backoff_max_seconds, source.backoff_seconds * 2**attempt)
    return random.uniform(0, ceiling)


def _retry_after_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; fall back to our own backoff


# --- one attempt ---------------------------------------------------------------------------


class _Deadline:
    """One attempt's wall-clock limit. A socket's own timeout bounds each read, not a whole
    answer, so a server sending a byte a second would never trip it: when the deadline
    passes, a timer shuts the attempt's sockets down, which ends any read blocked on them."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self.phase = "connecting or reading the headers"
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def remaining(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            self.expired = True
            raise TimeoutError("deadline passed")
        return left

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            self._shut(sock)

    def cancel(self) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # already closed: nothing is waiting on it
            sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """A connection whose socket its attempt's deadline can shut down."""

    def __init__(self, host: str, *, deadline: _Deadline, **settings) -> None:
        super().__init__(host, **settings)
        self.deadline = deadline

    def connect(self) -> None:
        super().connect()
        self.deadline.watch(self.sock)


class _HTTPConnection(_Watched, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, http.client.HTTPSConnection):
    pass


class _Handler(urllib.request.HTTPSHandler):
    """Opens http and https URLs over watched connections; nothing else, and no redirects
    (an opener without urllib's redirect, error and file handlers returns every answer)."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    http_request = urllib.request.AbstractHTTPHandler.do_request_

    def http_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPConnection, deadline=self.deadline)
        return self.do_open(connection, request)

    def https_open(self, request: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_HTTPSConnection, deadline=self.deadline)
        return self.do_open(connection, request, context=self._context)


def _attempt(source: HttpSource, url: str) -> tuple[bytes, str]:
    """One attempt, redirects included: (body, final URL) within the deadline, or a _Failure."""
    deadline = _Deadline(source.timeout_seconds)
    opener = urllib.request.OpenerDirector()
    opener.add_handler(urllib.request.ProxyHandler())  # from the environment, as urllib's
    opener.add_handler(_Handler(deadline))
    try:
        for _ in range(MAX_REDIRECTS + 1):
            _check_scheme(url)
            request = urllib.request.Request(url, headers=_headers(source, url))
            deadline.phase = "connecting or reading the headers"
            with opener.open(request, timeout=deadline.remaining()) as response:
                if response.status in REDIRECT_STATUS:
                    url = _redirect_target(source, url, response)
                    continue
                _check_status(response)
                return _read_body(source, response, deadline), url
        raise _Failure(
            f"more than {MAX_REDIRECTS} redirects",
            transient=False,
            fix="set `url` of this source to the address the redirects end at",
        )
    except (OSError, http.client.HTTPException) as error:
        raise _failure(error, deadline) from None
    except ValueError:  # an SSL socket shut down under a read
        if not deadline.expired:
            raise
        raise _timed_out(deadline) from None
    finally:
        deadline.cancel()


def _check_scheme(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme.lower() not in HTTP_SCHEMES:
        raise _Failure(
            f"{scheme or 'no'} scheme: an http source reads only http:// and https:// URLs",
            transient=False,
            fix="point `url` at an HTTP API; put local files in a `folder` source",
        )


def _headers(source: HttpSource, url: str) -> dict[str, str]:
    """The request's headers: the source's own (credentials) only for the url's origin."""
    headers = {"Accept": "application/json"}
    if http_origin(url) == http_origin(source.url):
        headers.update(source.headers)
    return headers


def _redirect_target(source: HttpSource, url: str, response: http.client.HTTPResponse) -> str:
    """Where a redirect leads, if this source may follow it; else a _Failure saying why."""
    location = response.headers.get("Location")
    status = f"HTTP {response.status} redirect"
    if not location:
        raise _Failure(f"{status} without a Location", transient=False, fix="check `url`")
    target = urllib.parse.urldefrag(urllib.parse.urljoin(url, location)).url
    _check_scheme(target)
    allowed = {http_origin(source.url), *map(http_origin, source.allow_redirects_to)}
    try:
        origin = http_origin(target)
    except ValueError:
        raise _Failure(f"{status} to {target!r}, not a URL", transient=False) from None
    if origin not in allowed:
        raise _Failure(
            f"{status} to {target}, another origin than the source's {http_origin(source.url)}",
            transient=False,
            fix=f"set `url` to the new address, or add {origin!r} to `allow_redirects_to` "
            "of this source if you trust it (the source's `headers` are not sent there)",
        )
    return target


def _check_status(response: http.client.HTTPResponse) -> None:
    if 200 <= response.status < 300:
        return
    transient = response.status in RETRYABLE_STATUS
    raise _Failure(
        f"HTTP {response.status} {response.reason}",
        transient,
        "check the URL and credentials (`url`, `headers`) of this source",
        _retry_after_seconds(response.headers.get("Retry-After")) if transient else None,
    )


def _read_body(
    source: HttpSource, response: http.client.HTTPResponse, deadline: _Deadline
) -> bytes:
    """The body, in chunks, never more than one byte over `max_response_bytes`."""
    limit = source.max_response_bytes
    announced = response.headers.get("Content-Length", "")
    if announced.isdigit() and int(announced) > limit:
        raise _too_large(limit, f"{int(announced)} bytes announced")
    chunks, received = [], 0
    while chunk := response.read1(min(_CHUNK_BYTES, limit + 1 - received)):
        received += len(chunk)
        if received > limit:
            raise _too_large(limit, f"stopped reading at {received} bytes")
        chunks.append(chunk)
        deadline.phase = f"reading the body, {received} bytes received"
        deadline.remaining()
    if deadline.expired:  # the socket was shut down: what was read is not the whole body
        raise _timed_out(deadline)
    body = b"".join(chunks)
    if announced.isdigit() and len(body) < int(announced):
        raise http.client.IncompleteRead(body, int(announced) - len(body))
    return body


def _too_large(limit: int, seen: str) -> _Failure:
    return _Failure(
        f"response larger than max_response_bytes={limit} ({seen})",
        transient=False,
        fix="raise `max_response_bytes` of this source, or ask the API for smaller pages",
    )


def _timed_out(deadline: _Deadline) -> _Failure:
    return _Failure(
        f"no complete answer within timeout_seconds={deadline.seconds:g} ({deadline.phase})",
        transient=True,
    )


def _failure(error: OSError | http.client.HTTPException, deadline: _Deadline) -> _Failure:
    """The _Failure an exception of one attempt stands for."""
    reason = getattr(error, "reason", None)  # a URLError: raised before the answer began
    if deadline.expired or isinstance(error, TimeoutError) or isinstance(reason, TimeoutError):
        return _timed_out(deadline)
    if isinstance(error, http.client.IncompleteRead):
        more = f", {error.expected} more expected" if error.expected is not None else ""
        return _Failure(f"body cut off ({len(error.partial)} bytes received{more})", True)
    if isinstance(error, urllib.error.URLError):
        if isinstance(reason, ConnectionResetError | ConnectionAbortedError):
            return _Failure(f"no answer ({reason})", transient=True)
        return _Failure(
            f"cannot connect ({reason})",
            transient=False,
            fix="check the host and port in `url` and that the server is up",
        )
    if isinstance(error, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
        return _Failure(f"connection lost ({error})", transient=True)
    if isinstance(error, http.client.HTTPException):
        return _Failure(
            f"answer is not valid HTTP ({error!r})",
            transient=False,
            fix="check that `url` points at an HTTP API",
        )
    return _Failure(f"request failed ({error})", transient=False)
