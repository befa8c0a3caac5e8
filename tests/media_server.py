"""A local HTTP server for URL attachments: fixed files, a failing path, a flaky one and a slow one."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class MediaSite:
    """What the server serves, and what it was asked for."""

    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # path -> (content type, bytes)
    delay: float = 0.0  # seconds before every answer (a slow CDN)
    flaky: dict[str, int] = field(default_factory=dict)  # path -> 503 answers still to give
    hits: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def add(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        self.files[path] = (content_type, data)
        return self.url + path

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


@contextmanager
def media_site() -> Iterator[MediaSite]:
    site = MediaSite()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.hits[self.path] = site.hits.get(self.path, 0) + 1
            if site.delay:
                time.sleep(site.delay)
            if site.flaky.get(self.path, 0) > 0:
                site.flaky[self.path] -= 1
                self._answer(503, "text/plain", b"busy")
                return
            found = site.files.get(self.path)
            if found is None:
                self._answer(404, "text/plain", b"not here")
                return
            self._answer(200, *found)

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # keep the test output clean

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
