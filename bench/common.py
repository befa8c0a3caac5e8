"""Shared helpers of the benchmarks: the fake as a subprocess, input files, measured runs, tables.

Everything talks to 127.0.0.1 only: the fake binds there, and every child process gets an environment
without proxy variables, so neither aiohttp (trust_env) nor urllib can route a request elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shlex
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
MODEL = "gemini-2.5-flash"
API_KEY = "bench-key"
POLL_INTERVAL = 0.02  # seconds between RSS samples of a measured child
CHILDREN_REFRESH = 0.5  # seconds between re-listings of the child's own children
MiB = 1024 * 1024

# A direct opener: never a proxy, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


def gembulk_command() -> list[str]:
    """The installed console script beside this interpreter (`.venv/bin/gembulk`), else `python -m gembulk`.

    BENCH_GEMBULK="cmd args" replaces it for the measured runs (A/B a candidate build); the fake
    always runs from the project.
    """
    override = os.environ.get("BENCH_GEMBULK")
    if override:
        return shlex.split(override)
    return project_gembulk()


def project_gembulk() -> list[str]:
    script = Path(PYTHON).parent / "gembulk"
    return [str(script)] if script.exists() else [PYTHON, "-m", "gembulk"]


def child_env(url: str | None = None) -> dict[str, str]:
    """The environment of every child: no proxies, the bench key, and the fake's URL when given."""
    env = {k: v for k, v in os.environ.items() if k not in _PROXY_VARS}
    env.pop("GOOGLE_GENAI_USE_VERTEXAI", None)
    env.pop("GOOGLE_API_KEY", None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["GEMINI_API_KEY"] = API_KEY
    env["PYTHONPATH"] = f"{ROOT}{os.pathsep}{env.get('PYTHONPATH', '')}".rstrip(os.pathsep)
    if url is not None:
        env["GOOGLE_GEMINI_BASE_URL"] = url
    return env


# ---------------------------------------------------------------------------------------------------
# The fake Gemini API as a subprocess.


class Fake:
    """`with Fake("--latency", "1") as fake:` starts `gembulk fake-server --port 0 ...` and stops it."""

    def __init__(self, *args: str, start_timeout: float = 20.0) -> None:
        self.args = [str(a) for a in args]
        self.start_timeout = start_timeout
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="gembulk-bench-fake-")
        self._stdout = Path(self._dir.name) / "stdout"
        self._stderr = Path(self._dir.name) / "stderr"

    def __enter__(self) -> Fake:
        cmd = [*project_gembulk(), "fake-server", "--host", "127.0.0.1", "--port", "0", *self.args]
        with open(self._stdout, "wb") as out, open(self._stderr, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=ROOT, env=child_env())
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            first = self._stdout.read_text(errors="replace").split("\n", 1)
            if len(first) == 2 and first[0].startswith("http://"):
                self.url = first[0].strip()
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        if not self.url.startswith("http://127.0.0.1:"):
            self.stop()
            raise RuntimeError(f"the fake did not start: {self._stderr.read_text(errors='replace')[-2000:]}")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._dir.cleanup()

    def stats(self) -> dict[str, Any]:
        """GET /_fake/stats, without the per-prompt table (large and of no use here)."""
        with _OPENER.open(f"{self.url}/_fake/stats", timeout=30) as response:
            stats = json.loads(response.read())
        stats.pop("by_prompt", None)
        return stats

    def reset(self, settle: float = 1.1) -> None:
        """POST /_fake/reset (counters and quota windows), then let a quota window pass."""
        request = urllib.request.Request(f"{self.url}/_fake/reset", method="POST", data=b"")
        with _OPENER.open(request, timeout=30) as response:
            response.read()
        time.sleep(settle)

    def cpu_seconds(self) -> float:
        """CPU time the fake has used so far (user + system), to show what the shared cores went to."""
        assert self.proc is not None
        times = psutil.Process(self.proc.pid).cpu_times()
        return times.user + times.system


# ---------------------------------------------------------------------------------------------------
# Input files.

_PRODUCTS = ("phone", "laptop", "headphones", "blender", "kettle", "backpack", "monitor", "keyboard")
_OPENINGS = (
    "Battery lasts two days",
    "Arrived a week late",
    "Sturdy build and quiet",
    "Stopped working after a month",
    "Great value for the price",
    "The manual is confusing",
    "Looks nicer than in the photos",
    "Support answered within an hour",
)
_ENDINGS = (
    "and I would buy it again.",
    "but the charger feels cheap.",
    "so I asked for a refund.",
    "which my whole family noticed.",
    "though setup took far too long.",
    "and it fits the small kitchen well.",
)


def review_text(rng: random.Random, size: int = 100) -> str:
    """A plausible product review of about `size` characters."""
    words = [rng.choice(_OPENINGS), rng.choice(_ENDINGS)]
    while sum(len(w) + 1 for w in words) < size - 12:
        words.insert(-1, rng.choice(("really", "honestly", "overall", "so far", "mostly", "clearly")))
    text = " ".join(words)
    return f"{text} (#{rng.randrange(10_000):04d})"[:size]


def make_csv(
    path: Path | str, rows: int, *, text_size: int = 100, seed: int = 7, markers: dict[int, str] | None = None
) -> Path:
    """A CSV of `rows` reviews: columns id, product, prompt (the prompt is ~text_size bytes of review).
    `markers` appends a fake prompt marker to some 1-based rows (e.g. " [[sleep:3]]": a slow row)."""
    rng = random.Random(seed)
    markers = markers or {}
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("id,product,prompt\n")
        for i in range(1, rows + 1):
            text = review_text(rng, text_size) + markers.get(i, "")
            handle.write(f"r{i:06d},{rng.choice(_PRODUCTS)},{text}\n")
    return path


@contextlib.contextmanager
def workdir(name: str) -> Iterator[Path]:
    """A temporary directory for one benchmark's inputs and outputs, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix=f"gembulk-bench-{name}-") as directory:
        yield Path(directory)


# ---------------------------------------------------------------------------------------------------
# Measured child processes.


@dataclass
class Measured:
    """One child process run to completion (or killed at its timeout)."""

    cmd: list[str]
    returncode: int
    wall: float  # seconds from spawn to exit, what a user waits
    peak_rss: int  # bytes: highest sum of the RSS of the child and its children, sampled every 20 ms
    maxrss: int  # bytes: the kernel's high-water mark of the child (wait4 ru_maxrss), a cross-check
    cpu: float  # seconds of user + system CPU of the child (and its reaped children)
    stdout: str
    stderr: str
    timed_out: bool = False
    samples: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def peak_rss_mib(self) -> float:
        return self.peak_rss / MiB

    def summary(self) -> dict[str, Any]:
        """gembulk's `--progress json` summary event (the last one on stderr), {} when absent."""
        for line in reversed(self.stderr.splitlines()):
            line = line.strip()
            if line.startswith("{") and '"summary"' in line:
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(line)
        return {}

    def result(self) -> dict[str, Any]:
        """The last JSON object a baseline script printed on stdout, {} when absent."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                with contextlib.suppress(json.JSONDecodeError):
                    return json.loads(line)
        return {}

    def check(self, what: str) -> Measured:
        """Raise with the child's stderr when it failed or was killed."""
        if self.timed_out or self.returncode != 0:
            why = "timed out" if self.timed_out else f"exit {self.returncode}"
            raise RuntimeError(f"{what} {why}: {self.stderr.strip()[-1500:]}")
        return self


def _tree_rss(root: psutil.Process, children: list[psutil.Process]) -> int:
    total = 0
    for proc in (root, *children):
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def run_measured(
    cmd: Sequence[str],
    *,
    env: dict[str, str],
    timeout: float,
    stdout: Path | str | None = None,
    cwd: Path | str = ROOT,
) -> Measured:
    """Run cmd, sampling the RSS of it and its children every 20 ms; kill it after `timeout` seconds.

    stdout goes to the given file (or is captured when None); stderr is always captured. The child is
    reaped with wait4 so its CPU time and kernel peak RSS are known as well.
    """
    cmd = [str(c) for c in cmd]
    with tempfile.TemporaryDirectory(prefix="gembulk-bench-run-") as scratch:
        out_path = Path(stdout) if stdout is not None else Path(scratch) / "stdout"
        err_path = Path(scratch) / "stderr"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            started = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=cwd, env=env, start_new_session=True)
        deadline = started + timeout
        peak = samples = 0
        timed_out = False
        status = 0
        usage = None
        try:
            root = psutil.Process(proc.pid)
        except psutil.Error:
            root = None
        children: list[psutil.Process] = []
        next_listing = 0.0
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.perf_counter()
            if root is not None:
                if now >= next_listing:
                    with contextlib.suppress(psutil.Error):
                        children = root.children(recursive=True)
                    next_listing = now + CHILDREN_REFRESH
                peak = max(peak, _tree_rss(root, children))
                samples += 1
            if now > deadline and not timed_out:
                timed_out = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            time.sleep(POLL_INTERVAL)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_text = "" if stdout is not None else out_path.read_text(errors="replace")
        err_text = err_path.read_text(errors="replace")
    return Measured(
        cmd=cmd,
        returncode=proc.returncode,
        wall=wall,
        peak_rss=peak,
        maxrss=(usage.ru_maxrss * 1024) if usage is not None else 0,
        cpu=(usage.ru_utime + usage.ru_stime) if usage is not None else 0.0,
        stdout=out_text,
        stderr=err_text,
        timed_out=timed_out,
        samples=samples,
    )


def run_gembulk(
    url: str,
    input_path: Path | str,
    *args: str,
    output: Path | str | None,
    timeout: float,
    stdout: Path | str | None = None,
) -> Measured:
    """`gembulk run INPUT -o OUTPUT --overwrite --progress json ARGS` against the fake at url.

    `--progress json` ends with a summary event (see Measured.summary). output=None writes records to
    stdout, which goes to the file `stdout` (or is captured).
    """
    target = ["-o", str(output), "--overwrite"] if output is not None else ["-o", "-"]
    cmd = [*gembulk_command(), "run", str(input_path), *target, "--progress", "json", *args]
    return run_measured(cmd, env=child_env(url), timeout=timeout, stdout=stdout)


def run_baseline(
    url: str, input_path: Path | str, *args: str, timeout: float, limit: int | None = None
) -> Measured:
    """`python -m bench.baseline` (a bare google-genai script) against the fake at url."""
    cmd = [PYTHON, "-m", "bench.baseline", "--input", str(input_path), *args]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    return run_measured(cmd, env=child_env(url), timeout=timeout)


def count_lines(path: Path | str) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


# ---------------------------------------------------------------------------------------------------
# Reporting.


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def print_header(title: str, detail: str = "") -> None:
    print()
    print(f"== {title} ==")
    if detail:
        print(detail)
    sys.stdout.flush()


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A plain aligned text table (first column left-aligned, the others right-aligned)."""
    cells = [[str(h) for h in headers]] + [[_fmt(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)
        ).rstrip()

    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for row in cells[1:]:
        print(line(row))
    sys.stdout.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def progress(message: str) -> None:
    """A line about what is running now (on stderr, so tables on stdout stay clean)."""
    print(f"  .. {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------
# Quota-bound jobs (bench_quota, bench_tokens): gembulk learning the quota or told it, and the naive script.

NAIVE_CONCURRENCY = 32
NAIVE_ATTEMPTS = 10  # the SDK's own retry: exponential backoff with jitter, ignoring RetryInfo
NAIVE_LABEL = f"Semaphore({NAIVE_CONCURRENCY}) + SDK retry x{NAIVE_ATTEMPTS}"

QuotaRun = tuple[Measured, dict[str, Any], dict[str, Any]]  # the run, the fake's stats, gembulk's summary


def run_learned_and_told(
    fake: Fake, data: Path, what: str, told: tuple[str, list[str]], *, outputs: Path, timeout: float
) -> dict[str, QuotaRun]:
    """gembulk on `data` with its defaults ("default": it learns the quota from the 429s) and told the
    quota up front (`told`: a name and the flags), the fake's counters reset before each."""
    runs: dict[str, QuotaRun] = {}
    for name, args in (("default", []), told):
        fake.reset()
        progress(f"{what}: gembulk run {' '.join(args) or '(defaults)'}")
        m = run_gembulk(fake.url, data, *args, output=outputs / f"{what}-{name}.jsonl", timeout=timeout)
        runs[name] = (m.check(f"gembulk {what} {name}"), fake.stats(), m.summary())
    return runs


def run_naive_baseline(
    fake: Fake, data: Path, what: str, *, timeout: float
) -> tuple[Measured, dict[str, Any]]:
    """The bare-SDK script at NAIVE_CONCURRENCY with the SDK's retry, the fake's counters reset first."""
    fake.reset()
    progress(f"{what}: baseline Semaphore({NAIVE_CONCURRENCY}) + gather, SDK retry x{NAIVE_ATTEMPTS}")
    args = ["--concurrency", str(NAIVE_CONCURRENCY), "--retry-attempts", str(NAIVE_ATTEMPTS)]
    return run_baseline(fake.url, data, *args, timeout=timeout), fake.stats()
