"""A real HTTP server on 127.0.0.1 that answers from a script, for the http source's tests.

Each route maps to a list of responses served in order; the last one repeats. A response is
a tuple (status, body[, headers]) or a `Reply`, which can also misbehave: announce a longer
body than it sends (a cut-off body), send its body or its status line and headers one byte
at a time (a dripping server), or send the body chunked, with no length announced. Every
request is recorded with its headers, so tests can assert what was retried and what was sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict = field(default_factory=dict)
    content_length: int | None = None  # announced length; more than len(body) cuts it off
    drip_seconds: float = 0.0  # pause before each byte of the body
    header_drip_seconds: float = 0.0  # pause before each byte of the status line and headers
    chunked: bool = False  # Transfer-Encoding: chunked, no Content-Length


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply]] = {}
        self.requests: list[str] = []
        self.headers: list[dict[str, str]] = []  # of each request, in order
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # for chunked bodies; every reply closes

            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server.requests.append(self.path)
                server.headers.append(dict(self.headers.items()))
                key = self.path if self.path in server.routes else urlsplit(self.path).path
                script = server.routes.get(key) or [Reply(404, b"not found")]
                reply = script.pop(0) if len(script) > 1 else script[0]
                self.close_connection = True
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                else:
                    length = reply.content_length
                    self.send_header(
                        "Content-Length", str(len(reply.body) if length is None else length)
                    )
                self.send_header("Connection", "close")
                # the client may give up first, as it should with a dripping server
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self._end_headers(reply)
                    self._send_body(reply)

            def _end_headers(self, reply: Reply) -> None:
                if not reply.header_drip_seconds:
                    self.end_headers()
                    return
                self._headers_buffer.append(b"\r\n")
                head = b"".join(self._headers_buffer)
                self._headers_buffer = []
                for index in range(len(head)):
                    time.sleep(reply.header_drip_seconds)
                    self.wfile.write(head[index : index + 1])
                    self.wfile.flush()

            def _send_body(self, reply: Reply) -> None:
                if reply.chunked:
                    body = memoryview(reply.body)
                    for start in range(0, len(body), 65536):
                        chunk = body[start : start + 65536]
                        self.wfile.write(b"%x\r\n" % len(chunk))
                        self.wfile.write(chunk)
                        self.wfile.write(b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                    return
                if not reply.drip_seconds:
                    self.wfile.write(reply.body)
                    return
                for index in range(len(reply.body)):
                    time.sleep(reply.drip_seconds)
                    self.wfile.write(reply.body[index : index + 1])
                    self.wfile.flush()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, *responses: Reply | tuple) -> None:
        self.routes[path] = [
            response if isinstance(response, Reply) else Reply(*response) for response in responses
        ]

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: a proxy there refuses every connection."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
