"""Throughput benchmark of the fake Gemini API, driven by a raw keep-alive HTTP/1.1 load client (no SDK).

Run: ``.venv/bin/python bench/bench_fake.py [--seconds 10] [--requests 20000] [--connections 32]``.
It starts ``python -m gembulk.fake --port 0`` as a subprocess (or uses ``--url``), sends POST generateContent
over N keep-alive connections, one request in flight per connection, and prints requests/s, the status counts
and the fake's /_fake/stats. Exit status is non-zero only when the benchmark cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "gemini-2.5-flash"


def build_requests(host: str, distinct: int) -> list[bytes]:
    """Pre-encoded HTTP requests, so the client spends its CPU on sending and parsing only."""
    out = []
    for i in range(distinct):
        body = json.dumps({"contents": [{"role": "user", "parts": [{"text": f"bench prompt number {i}"}]}]})
        head = (
            f"POST /v1beta/models/{MODEL}:generateContent HTTP/1.1\r\nHost: {host}\r\n"
            "x-goog-api-key: bench-key\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body.encode())
    return out


class _Connection(asyncio.Protocol):
    """One keep-alive connection: send a request, parse its response, send the next."""

    def __init__(self, load: _Load) -> None:
        self.load = load
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _send(self) -> None:
        request = self.load.next_request()
        if request is None:
            assert self.transport is not None
            self.transport.close()
        else:
            self.transport.write(request)  # type: ignore[union-attr]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            size = _response_size(self.buf)
            if size is None:
                return
            self.load.record(int(self.buf[9:12]))
            del self.buf[:size]
            self._send()


def _response_size(buf: bytearray) -> int | None:
    """Byte length of the first complete response in buf (Content-Length or chunked), None if incomplete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    start = end + 4
    at = head.find(b"\r\ncontent-length:")
    if at >= 0:
        stop = head.find(b"\r\n", at + 2)
        length = int(head[at + 17 : stop if stop >= 0 else len(head)])
        return start + length if len(buf) >= start + length else None
    if b"transfer-encoding: chunked" not in head:
        return start
    pos = start
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        chunk = int(bytes(buf[pos:line_end]).split(b";")[0], 16)
        pos = line_end + 2 + chunk + 2
        if len(buf) < pos:
            return None
        if chunk == 0:
            return pos


class _Load:
    def __init__(self, requests: list[bytes], total: int, deadline: float) -> None:
        self.requests = requests
        self.total = total
        self.deadline = deadline
        self.sent = 0
        self.statuses: Counter[int] = Counter()

    def next_request(self) -> bytes | None:
        if self.sent >= self.total or time.perf_counter() >= self.deadline:
            return None
        self.sent += 1
        return self.requests[self.sent % len(self.requests)]

    def record(self, status: int) -> None:
        self.statuses[status] += 1


async def run_load(
    host: str, port: int, connections: int, total: int, seconds: float
) -> tuple[Counter, float]:
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    load = _Load(build_requests(f"{host}:{port}", 64), total, started + seconds)
    conns = [
        (await loop.create_connection(lambda: _Connection(load), host, port))[1] for _ in range(connections)
    ]
    await asyncio.gather(*(c.closed for c in conns))
    return load.statuses, time.perf_counter() - started


def start_fake(extra: list[str]) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "gembulk.fake", "--port", "0", *extra],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise RuntimeError(f"the fake did not print its URL (got {url!r})")
    return proc, url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="stop after this long")
    parser.add_argument("--requests", type=int, default=20_000, help="or after this many requests")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--url", help="use a fake that is already running instead of starting one")
    parser.add_argument("fake_args", nargs="*", help="extra flags for python -m gembulk.fake (after --)")
    args = parser.parse_args(argv)
    proc = None
    try:
        if args.url:
            url = args.url.rstrip("/")
        else:
            proc, url = start_fake(args.fake_args)
        host, port = url.removeprefix("http://").rsplit(":", 1)
        urllib.request.urlopen(urllib.request.Request(f"{url}/_fake/reset", method="POST")).read()
        statuses, elapsed = asyncio.run(
            run_load(host, int(port), args.connections, args.requests, args.seconds)
        )
        stats = json.loads(urllib.request.urlopen(f"{url}/_fake/stats").read())
    except (OSError, RuntimeError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    done = sum(statuses.values())
    stats.pop("by_prompt", None)
    print(f"fake at {url}: {done} requests in {elapsed:.2f} s over {args.connections} connections")
    print(f"throughput: {done / elapsed:,.0f} requests/s")
    print(f"statuses: {dict(sorted(statuses.items()))}")
    print(f"fake stats: {json.dumps(stats)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
