"""A real HTTP server on 127.0.0.1 that answers from a script, for the http source's tests.

Each route maps to a list of responses (status, body, headers) served in order; the last one
repeats. Every request is recorded, so tests can assert what was retried.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class ScriptedServer:
    def __init__(self) -> None:
        self.routes: dict[str, list[tuple[int, bytes, dict]]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                server.requests.append(self.path)
                key = self.path if self.path in server.routes else urlsplit(self.path).path
                script = server.routes.get(key) or [(404, b"not found", {})]
                status, body, headers = script.pop(0) if len(script) > 1 else script[0]
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def route(self, path: str, *responses: tuple[int, bytes] | tuple[int, bytes, dict]) -> None:
        self.routes[path] = [(r[0], r[1], r[2] if len(r) > 2 else {}) for r in responses]

    def __enter__(self) -> ScriptedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
