"""Start the fake Gemini API in a background thread for tests: `with running_fake(rpm=5) as fake: ...`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from google import genai
from google.genai import types

from gembulk.fake import FakeConfig, FakeServer


@dataclasses.dataclass
class RunningFake:
    """A fake server running on its own event loop in a daemon thread."""

    url: str
    server: FakeServer

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        method = "GET" if data is None else "POST"
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def stats(self) -> dict[str, Any]:
        return self._call("/_fake/stats")

    def reset(self) -> dict[str, Any]:
        return self._call("/_fake/reset", {})

    def configure(self, **fields: Any) -> dict[str, Any]:
        """Change the live config (e.g. rpm=60, latency=0.2); returns the new config."""
        return self._call("/_fake/config", fields)


@contextmanager
def running_fake(**config_overrides: Any) -> Iterator[RunningFake]:
    """Run a fake on 127.0.0.1 and a free port for the duration of the block."""
    config = dataclasses.replace(FakeConfig(), port=0, **config_overrides)
    server = FakeServer(config)
    loop = asyncio.new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(server.start())
        except BaseException as exc:  # surfaced to the caller below
            failure.append(exc)
            return
        finally:
            started.set()
        loop.run_forever()
        loop.run_until_complete(server.stop())
        loop.close()

    thread = threading.Thread(target=run, name="fake-gemini", daemon=True)
    thread.start()
    started.wait(10)
    if failure or not server.url:
        loop.call_soon_threadsafe(loop.stop)  # a start still under way is abandoned, not left running
        thread.join(10)
        raise RuntimeError(f"the fake server did not start: {failure}")
    try:
        yield RunningFake(server.url, server)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


class Clients:
    """Makes real SDK clients for a fake and keeps them alive until close(): a genai.Client that is
    garbage-collected closes its HTTP pool, even under a call still running on it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.made: list[genai.Client] = []

    def __call__(self, key: str = "test-key", **options: Any) -> genai.Client:
        http_options = types.HttpOptions(base_url=self.url, **options)
        self.made.append(genai.Client(api_key=key, vertexai=False, http_options=http_options))
        return self.made[-1]

    def close(self) -> None:
        for client in self.made:
            client.close()
