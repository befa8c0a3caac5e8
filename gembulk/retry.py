"""The one retry policy: which failures are retried, how long to wait, and when to give up."""

from __future__ import annotations

import asyncio
import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from gembulk.records import CallFailed

T = TypeVar("T")

# 408 and 429 mean "try later"; 5xx are the service's own trouble. Other 4xx are the request's fault.
RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
# 401/403: the key cannot do this; 404 on generateContent means the model (or method) does not exist.
FATAL_CODES = frozenset({401, 403, 404})
FATAL_REASONS = frozenset({"API_KEY_INVALID", "API_KEY_SERVICE_BLOCKED", "SERVICE_DISABLED"})


class Verdict(enum.Enum):
    """What a failed call means for the row and for the run."""

    RETRY = "retry"  # transient: try the same row again later
    FAIL_ROW = "fail_row"  # permanent for this row: record the error, go on with the others
    FATAL = "fatal"  # no row can succeed: stop the run (exit 3)


def classify(exc: CallFailed) -> Verdict:
    """Decide what a failed call means; this is the only place that knows."""
    if exc.reason in FATAL_REASONS:
        return Verdict.FATAL
    if exc.code == 429 and any(v.per_day for v in exc.violations):
        # A per-day quota will not come back within any sensible retry budget.
        return Verdict.FATAL
    if exc.transport or exc.code in RETRYABLE_CODES:
        return Verdict.RETRY
    if exc.code in FATAL_CODES:
        return Verdict.FATAL
    return Verdict.FAIL_ROW


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds of the retry loop; both attempts and total time are capped ("never retry forever")."""

    max_attempts: int = 6
    max_time: float = 600.0
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    jitter: float = 0.5


@dataclass(frozen=True)
class RetryEvent:
    """Reported to observers before each retry sleep."""

    attempt: int  # the attempt that just failed (1-based)
    error: CallFailed
    wait: float


def backoff_for(
    exc: BaseException | None, attempt: int, policy: RetryPolicy, rng: Callable[[], float]
) -> float:
    """Seconds to wait before the next attempt.

    The server's RetryInfo delay wins when present (the SDK itself ignores it); otherwise exponential
    backoff. Jitter is added in both cases so rows that failed together do not return together.
    """
    if isinstance(exc, CallFailed) and exc.retry_delay is not None:
        return exc.retry_delay + rng() * min(policy.jitter, 0.1 * exc.retry_delay + 0.05)
    base = min(policy.max_backoff, policy.initial_backoff * 2 ** (attempt - 1))
    return base + rng() * policy.jitter


class _StopAfter(tenacity.stop.stop_base):
    """Stop on whichever comes first: the attempt cap or the time cap (measured on an injectable clock)."""

    def __init__(self, policy: RetryPolicy, clock: Callable[[], float]) -> None:
        self._policy = policy
        self._clock = clock
        self._started = clock()

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= self._policy.max_attempts:
            return True
        upcoming = retry_state.upcoming_sleep or 0.0
        return self._clock() - self._started + upcoming > self._policy.max_time


def build_retrying(
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> tenacity.AsyncRetrying:
    """A tenacity loop for one row: retries only what `classify` calls RETRY, re-raises the last error."""

    def wait(retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        return backoff_for(exc, retry_state.attempt_number, policy, rng)

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if on_retry is not None and isinstance(exc, CallFailed):
            on_retry(RetryEvent(retry_state.attempt_number, exc, retry_state.upcoming_sleep or 0.0))

    return tenacity.AsyncRetrying(
        sleep=sleep,
        stop=_StopAfter(policy, clock),
        wait=wait,
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, CallFailed) and classify(e) is Verdict.RETRY
        ),
        before_sleep=before_sleep,
        reraise=True,
    )


async def call_with_retries(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    *,
    on_retry: Callable[[RetryEvent], None] | None = None,
) -> T:
    """`await call()`, retried as `build_retrying` says; the last CallFailed is raised as it is."""
    async for attempt in build_retrying(policy, on_retry=on_retry):
        with attempt:
            return await call()
    raise AssertionError("unreachable: tenacity re-raises the last error")
