"""End-to-end test support: the fake API as a real subprocess, the installed `gembulk` command, and the
bookkeeping that lets no process a test started outlive it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

TEST_KEY = "test-key-0123456789-SECRET"


def gembulk_command() -> list[str]:
    """The installed console script (what users run), falling back to `python -m gembulk`."""
    script = Path(sys.executable).with_name("gembulk")
    if script.exists():
        return [str(script)]
    found = shutil.which("gembulk")
    return [found] if found else [sys.executable, "-m", "gembulk"]


# Processes a fixture started and stops at its own teardown (pid -> what it is): the per-test check
# leaves them alone; the end-of-session check does not.
OWNED: dict[int, str] = {}

# Run by a throwaway interpreter that then becomes the command (exec keeps the pid): PR_SET_PDEATHSIG (1)
# asks the kernel for SIGTERM when the thread that started it dies, so a test process killed outright
# (SIGKILL, a CI timeout, a crashed xdist worker) cannot leave its fake behind; the setting survives exec.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
ctypes.CDLL(None).prctl(1, signal.SIGTERM)
if os.getppid() != int(sys.argv[1]):
    sys.exit("the test process is already gone")
os.execv(sys.argv[2], sys.argv[2:])
"""


def dying_with_this_process(command: list[str]) -> list[str]:
    """`command`, to be stopped by the kernel if this process dies first (Linux; elsewhere as is).

    Start it from the thread that lives as long as it should: the main thread (as fixtures and xdist
    workers do), never a short-lived one."""
    if not sys.platform.startswith("linux"):
        return command
    executable = command[0] if os.path.isabs(command[0]) else shutil.which(command[0]) or command[0]
    return [sys.executable, "-I", "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), executable, *command[1:]]


class FakeAPI:
    """`gembulk fake-server` running in its own process, with its control endpoints; stop() it (or use it
    as a context manager): it is owned until then."""

    def __init__(self, *args: str) -> None:
        command = [*gembulk_command(), "fake-server", "--port", "0", *args]
        self.process = subprocess.Popen(
            dying_with_this_process(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        OWNED[self.process.pid] = "gembulk fake-server " + " ".join(args)
        assert self.process.stdout is not None
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.stop()
            raise RuntimeError(f"fake server did not print its URL: {self.url!r}")

    def __enter__(self) -> FakeAPI:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

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
                self.process.wait(timeout=10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        OWNED.pop(self.process.pid, None)


def running_processes() -> list[psutil.Process]:
    """Every live descendant of this process (zombies are dead already: left out)."""
    alive = []
    for process in psutil.Process().children(recursive=True):
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def process_ids(processes: list[psutil.Process]) -> set[tuple[int, float]]:
    """Identities that survive pid reuse: (pid, start time)."""
    found = set()
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            found.add((process.pid, process.create_time()))
    return found


def describe(process: psutil.Process) -> str:
    try:
        command = " ".join(process.cmdline()) or process.name()
    except psutil.Error:
        command = "(gone)"
    return f"pid {process.pid}: {command[:300]}"


def stop_processes(processes: list[psutil.Process]) -> None:
    """SIGKILL and wait: what is left over is not asked nicely."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    psutil.wait_procs(processes, timeout=10)


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


def start_cli(args: Sequence[str], url: str) -> subprocess.Popen[str]:
    """gembulk ARGS started in the background against the fake at url: stdout discarded, stderr piped
    (read it with communicate())."""
    return subprocess.Popen(
        [*gembulk_command(), *args],
        env=cli_env(url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
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
