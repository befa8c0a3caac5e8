"""The HTTP session the SDK sends through: aiohttp, sized to the concurrency, trusting the environment only
when it could route a request."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.request import getproxies

import aiohttp


def environment_routes_requests() -> bool:
    """Whether aiohttp's `trust_env` could change any request: a proxy variable or a netrc file.

    With `trust_env=True`, aiohttp looks both up again for every request, each in a thread
    (`run_in_executor` for netrc, `to_thread` for the proxy): two hops through the default pool of
    6 threads per request. A wave of 100 answers queued 200 of them, about 40 ms a wave at `-c 100`
    (bench/README.md). With no proxy variable (the schemes aiohttp reads) and no netrc file, every
    one of those look-ups finds nothing, so `trust_env=False` sends the same requests. Checked once
    per client; when in doubt (any proxy variable, a netrc file present or named), trust the
    environment as before.
    """
    if any(scheme in getproxies() for scheme in ("http", "https", "ws", "wss")):
        return True
    if os.environ.get("NETRC") is not None:
        return True
    try:
        home = Path.home()
    except RuntimeError:  # no resolvable home directory: aiohttp finds no netrc either
        return False
    return any((home / name).exists() for name in (".netrc", "_netrc"))  # _netrc: aiohttp on Windows


def new_session(max_connections: int) -> aiohttp.ClientSession:
    """A session whose connector allows the whole concurrency cap (the SDK's own session is unlimited)."""
    connector = aiohttp.TCPConnector(limit=max_connections + 4, limit_per_host=0)
    return aiohttp.ClientSession(connector=connector, trust_env=environment_routes_requests())
