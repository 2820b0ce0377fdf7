"""A real HTTP server on 127.0.0.1 for tests: serves files, redirects, slow and oversized answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

Route = Callable[[BaseHTTPRequestHandler], None]


class LocalServer:
    """Routes are functions of the handler; `serve_file`, `redirect_to`, `hang` and `huge` build common ones."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[str] = []
        routes, hits = self.routes, self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                hits.append(self.path)
                route = routes.get(self.path.split("?", 1)[0])
                if route is None:
                    self.send_error(404)
                    return
                route(self)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> LocalServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def serve_bytes(body: bytes, content_type: str = "application/octet-stream") -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return route


def serve_file(path: Path, content_type: str = "application/octet-stream") -> Route:
    return serve_bytes(path.read_bytes(), content_type)


def redirect_to(location: str) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def hang(seconds: float) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)

    return route


def huge(total_bytes: int, declare_length: bool) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        if declare_length:
            h.send_header("Content-Length", str(total_bytes))
        h.end_headers()
        chunk = b"\0" * 65536
        sent = 0
        try:
            while sent < total_bytes:
                h.wfile.write(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    return route
