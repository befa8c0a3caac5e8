"""Batch jobs on the service: calls with the online retry policy, job state read from the raw Operation,
and polling with capped exponential backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from gembulk.client import GeminiClient
from gembulk.errors import BatchError, FatalAPIError, GembulkError, NotReadyError
from gembulk.filemodes import create_private
from gembulk.observer import RunObserver
from gembulk.records import CallFailed
from gembulk.retry import RetryEvent, RetryPolicy, Verdict, call_with_retries, classify

logger = logging.getLogger(__name__)

T = TypeVar("T")

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED", "EXPIRED"})
_STATE_PREFIXES = ("BATCH_STATE_", "JOB_STATE_")
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass(frozen=True)
class JobStatus:
    """What one GET batches/ID says, read from the raw Operation (see GeminiClient.get_batch)."""

    name: str
    state: str  # PENDING, RUNNING, SUCCEEDED, FAILED, CANCELLED or EXPIRED (BATCH_STATE_ prefix dropped)
    display_name: str | None = None
    model: str | None = None
    input_file: str | None = None
    results_file: str | None = None  # metadata.output.responsesFile: the only place results are read from
    requests: int | None = None
    succeeded: int | None = None
    failed: int | None = None
    pending: int | None = None
    error: str | None = None  # the Operation's top-level error message (a FAILED job)
    create_time: str | None = None
    update_time: str | None = None
    end_time: str | None = None

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    def age(self, now: datetime | None = None) -> float | None:
        """Seconds since the job was created (None when the service did not say)."""
        created = parse_time(self.create_time)
        if created is None:
            return None
        end = parse_time(self.end_time) if self.done else None
        return max(0.0, ((end or now or datetime.now(UTC)) - created).total_seconds())

    def counts(self) -> str:
        """ "12/50 done, 1 failed", as far as the service reports counts ("" when it does not)."""
        if self.requests is None:
            return ""
        if self.done or self.pending is None:
            finished = (self.succeeded or 0) + (self.failed or 0)
        else:
            finished = max(0, self.requests - self.pending)
        text = f"{finished}/{self.requests} done"
        return text + (f", {self.failed} failed" if self.failed else "")

    def describe(self) -> str:
        """One line for progress and `batch status`: name, state, age, counts."""
        parts = [f"{self.name}: {self.state}"]
        age = self.age()
        if age is not None:
            parts.append(f"after {format_duration(age)}")
        counts = self.counts()
        if counts:
            parts.append(f"({counts})")
        if self.error:
            parts.append(f"- {self.error}")
        return " ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "done": self.done,
            "display_name": self.display_name,
            "model": self.model,
            "input_file": self.input_file,
            "results_file": self.results_file,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "pending": self.pending,
            "error": self.error,
            "create_time": self.create_time,
            "update_time": self.update_time,
            "end_time": self.end_time,
        }


def _count(stats: dict[str, Any], key: str) -> int | None:
    value = stats.get(key)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def status_from_operation(operation: dict[str, Any], name: str | None = None) -> JobStatus:
    """Read a batch Operation as the service sends it (camelCase, int64 counts as strings)."""
    meta = operation.get("metadata") if isinstance(operation.get("metadata"), dict) else {}
    state = str(meta.get("state") or "STATE_UNSPECIFIED")
    for prefix in _STATE_PREFIXES:
        state = state.removeprefix(prefix)
    output = meta.get("output") if isinstance(meta.get("output"), dict) else {}
    config = meta.get("inputConfig") if isinstance(meta.get("inputConfig"), dict) else {}
    stats = meta.get("batchStats") if isinstance(meta.get("batchStats"), dict) else {}
    error = operation.get("error") if isinstance(operation.get("error"), dict) else None
    requests = _count(stats, "requestCount")
    succeeded = _count(stats, "successfulRequestCount")
    failed = _count(stats, "failedRequestCount")
    pending = _count(stats, "pendingRequestCount")
    if state in TERMINAL and requests is not None:  # proto3 JSON omits zero counts
        succeeded, failed = succeeded or 0, failed or 0
    model = meta.get("model")
    return JobStatus(
        name=str(operation.get("name") or meta.get("name") or name or "?"),
        state=state,
        display_name=meta.get("displayName"),
        model=str(model).removeprefix("models/") if model else None,
        input_file=config.get("fileName"),
        results_file=output.get("responsesFile"),
        requests=requests,
        succeeded=succeeded,
        failed=failed,
        pending=pending,
        error=str(error.get("message") or error.get("status") or error) if error else None,
        create_time=meta.get("createTime"),
        update_time=meta.get("updateTime"),
        end_time=meta.get("endTime"),
    )


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 time as the service prints it (up to 9 fractional digits, Z)."""
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value).replace("Z", "+00:00"))
    return None


def format_duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _fatal(what: str, failure: CallFailed) -> GembulkError:
    """The one-line error for a batch call the retry policy gave up on (exit 3)."""
    message = f"{what}: {failure.code or ''} {failure.status}: {failure.message}".replace(":  ", ": ")
    verdict = classify(failure)
    if failure.code == 404 and what.startswith(("get ", "cancel ")):
        return BatchError(
            message, hint="no such batch job (a typo, a deleted job, or one created with another API key)"
        )
    if failure.code in (403, 404) and what.startswith("download "):  # a missing file is 403 on the real API
        return BatchError(
            f"{what}: the file is gone (deleted after an earlier fetch, or expired 48 h after the job)",
            hint="if OUT already holds these rows nothing is lost; otherwise run the job again",
        )
    if failure.reason == "API_KEY_INVALID" or failure.code in (401, 403):
        hint = "check the API key (--api-key, GEMINI_API_KEY or GOOGLE_API_KEY) and its permissions"
    elif failure.code == 404:
        hint = "check the model name (-m); see https://ai.google.dev/gemini-api/docs/models"
    elif verdict is Verdict.RETRY:
        hint = "the service kept failing; nothing submitted is lost, run the same command again later"
    else:
        hint = None
    return FatalAPIError(message, hint=hint)


class BatchService:
    """The batch calls of GeminiClient, each wrapped in the same retry policy as an online row."""

    def __init__(
        self,
        client: GeminiClient,
        policy: RetryPolicy,
        *,
        on_retry: Callable[[RetryEvent], None] | None = None,
    ) -> None:
        self.client = client
        self.policy = policy
        self._on_retry = on_retry

    async def _retry(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call_with_retries(self.policy, call, on_retry=self._on_retry)
        except CallFailed as failure:
            raise _fatal(what, failure) from failure

    async def upload(self, path: str, display_name: str) -> str:
        return await self._retry(
            f"upload {display_name}", lambda: self.client.upload_file(path, display_name=display_name)
        )

    async def create(self, model: str, file_name: str, display_name: str) -> str:
        return await self._retry(
            f"create a batch job on {file_name}",
            lambda: self.client.create_batch(model, file_name, display_name=display_name),
        )

    async def status(self, name: str) -> JobStatus:
        operation = await self._retry(f"get {name}", lambda: self.client.get_batch(name))
        return status_from_operation(operation, name)

    async def cancel(self, name: str) -> None:
        await self._retry(f"cancel {name}", lambda: self.client.cancel_batch(name))

    async def download(self, file_name: str, destination: str) -> None:
        create_private(destination)  # the SDK opens it for writing: it then holds answers, so 0600
        await self._retry(f"download {file_name}", lambda: self.client.download_file(file_name, destination))

    async def delete_file(self, file_name: str) -> str | None:
        """Delete a file; None when done (or already gone), else why it could not be deleted."""
        try:
            await self._retry(f"delete {file_name}", lambda: self.client.delete_file(file_name))
        except (FatalAPIError, BatchError) as exc:
            cause = exc.__cause__
            if isinstance(cause, CallFailed) and cause.code in (403, 404):  # gone: 403 on the real API
                return None
            return exc.message
        return None

    async def list(self, *, limit: int, page_size: int = 100) -> list[JobStatus]:
        """The newest `limit` jobs of this API key."""
        found: list[JobStatus] = []
        token: str | None = None
        while len(found) < limit:
            size = min(page_size, limit - len(found))
            page = await self._retry(
                "list batch jobs", lambda s=size, t=token: self.client.list_batches(page_size=s, page_token=t)
            )
            found.extend(status_from_operation(op) for op in page.get("operations") or [])
            token = page.get("nextPageToken")
            if not token:
                break
        return found[:limit]

    async def find_job_for_file(self, file_name: str, *, limit: int = 500) -> str | None:
        """The job created on an uploaded file, if any: adopts a job whose creation was not recorded."""
        for job in await self.list(limit=limit):
            if job.input_file == file_name:
                return job.name
        return None


@dataclass(frozen=True)
class PollSettings:
    """Capped exponential backoff between polls, and an optional overall deadline."""

    interval: float
    max_interval: float
    timeout: float | None = None


async def poll(
    service: BatchService,
    names: list[str],
    settings: PollSettings,
    observer: RunObserver,
    *,
    wait: bool,
    stopping: asyncio.Event,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, JobStatus] | None:
    """Poll the jobs until every one has ended; None when `stopping` was set first.

    With `wait=False` one look is taken and NotReadyError (exit 4) raised if a job is still going; with
    a timeout, NotReadyError once it has passed. Each change of state or counts is one phase line.
    """
    started = clock()
    statuses: dict[str, JobStatus] = {}
    shown: dict[str, tuple[str, str]] = {}
    interval = settings.interval
    while True:
        for name in names:
            if name in statuses and statuses[name].done:
                continue
            status = statuses[name] = await service.status(name)
            seen = (status.state, status.counts())
            if shown.get(name) != seen:
                shown[name] = seen
                observer.phase(status.describe())
        running = [s for s in statuses.values() if not s.done]
        if not running:
            return statuses
        if not wait:
            raise NotReadyError(_not_done(running), hint="run `gembulk batch fetch` again later")
        remaining = None if settings.timeout is None else settings.timeout - (clock() - started)
        if remaining is not None and remaining <= 0:
            raise NotReadyError(
                f"timed out after {format_duration(settings.timeout or 0)}: {_not_done(running)}",
                hint="the jobs keep running; wait or fetch again later",
            )
        delay = interval if remaining is None else min(interval, remaining)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), delay)
        if stopping.is_set():
            return None
        interval = min(settings.max_interval, interval * 2)


def _not_done(running: list[JobStatus]) -> str:
    listed = "; ".join(s.describe() for s in running)
    return f"not done yet: {listed}"
