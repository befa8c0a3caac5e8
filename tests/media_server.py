"""A local HTTP server for URL attachments: fixed files, a failing path, a flaky one, a slow one, redirects,
endless bodies; it also serves as an HTTP proxy (a request for an absolute URL is counted under that URL)."""

from __future__ import annotations

import hashlib
import socket
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
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location of a 302
    streams: dict[str, tuple[int, bool]] = field(default_factory=dict)  # path -> (body size, Content-Length?)
    sent: dict[str, int] = field(default_factory=dict)  # body bytes a stream got out before the client left
    hits: dict[str, int] = field(default_factory=dict)
    url: str = ""

    def add(self, path: str, data: bytes, content_type: str = "image/png") -> str:
        self.files[path] = (content_type, data)
        return self.url + path

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


@contextmanager
def media_site(host: str = "127.0.0.1") -> Iterator[MediaSite]:
    site = MediaSite()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            site.hits[self.path] = site.hits.get(self.path, 0) + 1
            if site.delay:
                time.sleep(site.delay)
            if self.path in site.redirects:
                self.send_response(302)
                self.send_header("Location", site.redirects[self.path])
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if self.path in site.streams:
                self._stream(*site.streams[self.path])
                return
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

        def _stream(self, size: int, with_length: bool) -> None:
            site.sent[self.path] = 0
            self.send_response(200)
            self.send_header("Content-Type", "video/mp4")
            if with_length:
                self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"\0" * 65536
            try:
                while site.sent[self.path] < size:
                    self.wfile.write(chunk)
                    site.sent[self.path] += len(chunk)
            except OSError:
                pass  # the client hung up: what it took is counted
            self.close_connection = True

        def log_message(self, *args: object) -> None:
            pass  # keep the test output clean

    server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
    server = server_class((host, 0), Handler)
    server.daemon_threads = True
    shown = f"[{host}]" if ":" in host else host
    site.url = f"http://{shown}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
