"""End-to-end test support: the fake API as a real subprocess, and the installed `gembulk` command."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TEST_KEY = "test-key-0123456789-SECRET"


def gembulk_command() -> list[str]:
    """The installed console script (what users run), falling back to `python -m gembulk`."""
    script = Path(sys.executable).with_name("gembulk")
    if script.exists():
        return [str(script)]
    found = shutil.which("gembulk")
    return [found] if found else [sys.executable, "-m", "gembulk"]


class FakeAPI:
    """`gembulk fake-server` running in its own process, with its control endpoints."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [*gembulk_command(), "fake-server", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"fake server did not print its URL: {self.url!r}")

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"{}")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_fake/stats")

    def reset(self) -> None:
        self._call("POST", "/_fake/reset", {})

    def configure(self, **fields: Any) -> dict[str, Any]:
        return self._call("POST", "/_fake/config", fields)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def cli_env(url: str, **extra: str | None) -> dict[str, str]:
    """A clean environment: the fake's URL, a test key, nothing inherited that could change behaviour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GOOGLE_", "GEMINI_", "GEMBULK_"))}
    env.update({"GOOGLE_GEMINI_BASE_URL": url, "GEMINI_API_KEY": TEST_KEY, "NO_PROXY": "127.0.0.1,localhost"})
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(
    args: Sequence[str],
    url: str,
    *,
    stdin: str | None = None,
    timeout: float = 60,
    cwd: Path | None = None,
    **env: str | None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*gembulk_command(), *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        env=cli_env(url, **env),
        cwd=cwd,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_id(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in records}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    import csv

    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
