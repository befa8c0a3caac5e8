"""Progress on stderr: a Rich bar on a terminal, plain status lines in logs, JSON lines for machines."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterable
from functools import cache
from typing import IO, TYPE_CHECKING, Any

from gembulk.observer import NullObserver, RunObserver
from gembulk.settings import ProgressMode
from gembulk.stats import RunStats

if TYPE_CHECKING:
    from rich.progress import Progress

# Rich is imported by the bar only: the plain and JSON displays (logs, pipes, the benchmarks) start
# about 20 ms sooner without it.

PLAIN_INTERVAL = 5.0  # seconds between status lines when stderr is not a terminal: small cron logs
JSON_INTERVAL = 1.0
BAR_REFRESH = 0.2


def make_observer(mode: ProgressMode, *, quiet: bool, stream: IO[str] | None = None) -> RunObserver:
    """Pick the display: `auto` is a bar on a terminal and plain lines anywhere else."""
    stream = stream or sys.stderr
    if mode is ProgressMode.AUTO:
        mode = ProgressMode.BAR if stream.isatty() else ProgressMode.PLAIN
    if mode is ProgressMode.OFF:
        return QuietObserver(stream, quiet=False) if not quiet else NullObserver()
    if mode is ProgressMode.JSON:
        return JsonObserver(stream, quiet=quiet)
    if mode is ProgressMode.BAR:
        return BarObserver(stream, quiet=quiet)
    return PlainObserver(stream, quiet=quiet)


def status_fields(stats: RunStats, elapsed: float) -> dict[str, Any]:
    """The numbers every display shows, computed once."""
    done = stats.done
    rate = done / elapsed if elapsed > 0 else 0.0
    remaining = stats.remaining
    return {
        "done": done + stats.skipped,
        "total": stats.total,
        "ok": stats.ok,
        "failed": stats.failed,
        "skipped": stats.skipped,
        "rows_per_s": round(rate, 2),
        "eta_s": round(remaining / rate, 1) if rate > 0 else None,
        "requests": stats.requests,
        "retries": stats.retries,
        "rate_limited": stats.rate_limited,
        "in_flight": stats.in_flight,
        "concurrency": stats.concurrency,
        "tokens": stats.total_tokens,
        "prompt_tokens": stats.prompt_tokens,
        "output_tokens": stats.output_tokens,
        "cost_usd": round(stats.cost_usd, 6) if stats.cost_known else None,
        "cache_hits": stats.cache_hits,
        "cached_tokens": stats.cached_tokens,
        "cache_saved_usd": round(stats.cache_saving_usd - stats.cache_storage_usd, 6),
        "elapsed_s": round(elapsed, 2),
    }


def money(stats: RunStats) -> str:
    """The spend so far; "?" when a model without a known price answered."""
    return f"${stats.cost_usd:.4f}" if stats.cost_known else f"${stats.cost_usd:.4f} + ? (unpriced model)"


def cache_saving(stats: RunStats) -> str:
    """What context caching saved: cached tokens billed at the cached rate, less the caches' storage."""
    net = stats.cache_saving_usd - stats.cache_storage_usd
    storage = f", storage ${stats.cache_storage_usd:.4f}" if stats.cache_storage_usd else ""
    verb = f"saved ${net:.4f}" if net >= 0 else f"cost ${-net:.4f} more than inline"
    return f"{stats.cached_tokens:,} cached tokens ({verb}{storage})"


def summary_line(stats: RunStats, elapsed: float, outcome: str) -> str:
    failures = ", ".join(f"{status} {count}" for status, count in sorted(stats.failures_by_status.items()))
    parts = [
        f"gembulk: {outcome}: {stats.ok} ok, {stats.failed} failed" + (f" ({failures})" if failures else "")
    ]
    if stats.skipped:
        parts.append(f"{stats.skipped} already done")
    parts.append(f"{stats.total_tokens:,} tokens")
    parts.append(money(stats))
    if stats.cached_tokens or stats.cache_storage_usd:
        parts.append(cache_saving(stats))
    if stats.cache_hits:
        parts.append(f"{stats.cache_hits} from cache")
    parts.append(f"{elapsed:.1f}s")
    rps = stats.requests / elapsed if elapsed > 0 else 0.0
    parts.append(f"{rps:.1f} req/s")
    if stats.rate_limited:
        parts.append(f"{stats.rate_limited} rate-limited (429)")
    if stats.retries:
        parts.append(f"{stats.retries} retries")
    return ", ".join(parts)


class _TickingObserver:
    """Shared machinery: a periodic task that renders the live stats."""

    interval = PLAIN_INTERVAL

    def __init__(self, stream: IO[str], *, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.stats = RunStats()
        self.started = time.monotonic()
        self._ticker: asyncio.Task[None] | None = None
        self.title = ""

    def start(self, stats: RunStats, *, title: str) -> None:
        self.stats = stats
        self.title = title
        self.started = time.monotonic()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.render()

    def render(self) -> None:
        raise NotImplementedError

    def _stop_ticker(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def message(self, text: str) -> None:
        print(f"gembulk: {text}", file=self.stream, flush=True)

    def phase(self, text: str) -> None:
        self.message(text)

    def finish(self, stats: RunStats, *, elapsed: float, outcome: str) -> None:
        self._stop_ticker()
        if not self.quiet:
            self.message(summary_line(stats, elapsed, outcome).removeprefix("gembulk: "))


class QuietObserver(_TickingObserver):
    """--progress off: no status lines, but messages and the summary still reach stderr."""

    def start(self, stats: RunStats, *, title: str) -> None:
        self.stats = stats

    def render(self) -> None:
        pass


class PlainObserver(_TickingObserver):
    """One status line every few seconds: readable in cron mail and CI logs, and small."""

    def render(self) -> None:
        f = status_fields(self.stats, time.monotonic() - self.started)
        percent = 100.0 * f["done"] / f["total"] if f["total"] else 100.0
        eta = f"{f['eta_s']:.0f}s" if f["eta_s"] is not None else "?"
        print(
            f"gembulk: {f['done']}/{f['total']} rows ({percent:.0f}%), {f['ok']} ok, {f['failed']} failed, "
            f"{f['rows_per_s']:.1f} rows/s, ETA {eta}, {f['tokens']:,} tokens, {money(self.stats)}, "
            f"{f['retries']} retries, {f['rate_limited']} x 429, concurrency {f['concurrency']}",
            file=self.stream,
            flush=True,
        )


class JsonObserver(_TickingObserver):
    """Machine-readable progress: one JSON object per line on stderr."""

    interval = JSON_INTERVAL

    def _emit(self, event: str, **fields: Any) -> None:
        print(json.dumps({"event": event, **fields}, separators=(",", ":")), file=self.stream, flush=True)

    def render(self) -> None:
        self._emit("progress", **status_fields(self.stats, time.monotonic() - self.started))

    def message(self, text: str) -> None:
        self._emit("message", text=text)

    def phase(self, text: str) -> None:
        self._emit("phase", text=text)

    def finish(self, stats: RunStats, *, elapsed: float, outcome: str) -> None:
        self._stop_ticker()
        if not self.quiet:
            self._emit(
                "summary", outcome=outcome, **status_fields(stats, elapsed), failures=stats.failures_by_status
            )


@cache
def _progress_with_detail() -> type[Progress]:
    from rich.console import RenderableType
    from rich.progress import Progress
    from rich.text import Text

    class _ProgressWithDetail(Progress):
        """A Rich Progress with one extra status line under the bar (tokens, retries, 429s, concurrency)."""

        detail: Text = Text()

        def get_renderables(self) -> Iterable[RenderableType]:
            yield self.make_tasks_table(self.tasks)
            yield self.detail

    return _ProgressWithDetail


class BarObserver(_TickingObserver):
    """A Rich progress bar with rate and ETA, and a status line of tokens, retries, 429s and concurrency."""

    interval = BAR_REFRESH

    def __init__(self, stream: IO[str], *, quiet: bool) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.text import Text

        super().__init__(stream, quiet=quiet)
        self._text = Text
        self.console = Console(file=stream, stderr=stream is sys.stderr)
        self.progress = _progress_with_detail()(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
            expand=False,
        )
        self.task_id = self.progress.add_task("gembulk", total=None, rate="")

    def start(self, stats: RunStats, *, title: str) -> None:
        super().start(stats, title=title)
        self.progress.update(self.task_id, description=title, total=stats.total)
        self.progress.start()
        self.render()

    def render(self) -> None:
        f = status_fields(self.stats, time.monotonic() - self.started)
        detail = self._text.assemble(
            f"  {f['ok']} ok · ",
            (f"{f['failed']} failed", "red" if f["failed"] else ""),
            f" · {f['tokens']:,} tokens · {money(self.stats)} · {f['retries']} retries"
            f" · {f['rate_limited']}×429 · in flight {f['in_flight']}/{f['concurrency']}",
        )
        self.progress.detail = detail
        self.progress.update(
            self.task_id, completed=f["done"], total=f["total"], rate=f"{f['rows_per_s']:.1f} rows/s"
        )

    def message(self, text: str) -> None:
        self.console.print(f"gembulk: {text}", markup=False, highlight=False)

    def finish(self, stats: RunStats, *, elapsed: float, outcome: str) -> None:
        self._stop_ticker()
        self.render()
        self.progress.stop()
        if not self.quiet:
            self.message(summary_line(stats, elapsed, outcome).removeprefix("gembulk: "))
