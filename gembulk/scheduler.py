"""Admission of requests: pool-wide cool-down, rate limits and adaptive concurrency, learning from 429s."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gembulk.concurrency import AdaptiveConcurrency
from gembulk.ratelimit import RateLimiter
from gembulk.records import CallFailed
from gembulk.stats import RunStats

# Pace a little under a quota the server announced: arrival times jitter, and a window that is
# exactly full refuses the next request.
QUOTA_SAFETY = 0.98
# The user's --rpm/--tpm is paced a hair under, for the same reason; exactly at the limit, a window
# that jitter fills one request early answers 429 (measured: 4.5% 429s at 1.00, 0.3% at 0.99).
USER_RATE_SAFETY = 0.99
# With no announced quota, settle a little under the rate the server was seen to admit.
OBSERVED_SAFETY = 0.9
# A 429 without RetryInfo: cool down this long, doubling while 429s keep coming.
DEFAULT_COOLDOWN = 1.0
MAX_COOLDOWN = 60.0
# An inferred (not announced) rate is probed upwards by this factor after each quiet period.
PROBE_PERIOD = 5.0
PROBE_FACTOR = 1.1


def _under(rate: float | None) -> float | None:
    return rate * USER_RATE_SAFETY if rate is not None else None


@dataclass(frozen=True)
class Limits:
    """What the user asked for: a hard in-flight cap and optional per-minute rates."""

    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    adaptive: bool = True


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request: the concurrency epoch it was dispatched in, for stale-signal filtering."""

    epoch: int


class Scheduler:
    """Decides when each request may start.

    Order of admission: a concurrency slot first (so a waiting request holds its place), then the
    pool-wide cool-down, then request and token pacing. A 429 cools the whole pool down for the
    server's RetryInfo delay, halves the concurrency limit, and caps the request rate: at the quota
    the server announced (QuotaFailure quotaValue) or, failing that, under the rate it was seen to admit.
    """

    def __init__(
        self,
        limits: Limits,
        stats: RunStats,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.limits = limits
        self.stats = stats
        self._clock = clock
        self._sleep = sleep
        self._rng = rng
        self.concurrency = AdaptiveConcurrency(limits.concurrency)
        self.requests = RateLimiter(_under(limits.rpm), clock=clock, sleep=sleep)
        self.tokens = RateLimiter(_under(limits.tpm), clock=clock, sleep=sleep)
        self._paused_until = 0.0
        self._cooldown = DEFAULT_COOLDOWN
        self._successes: deque[float] = deque()
        self._started = clock()
        self._rate_inferred = False
        self._last_429 = 0.0
        stats.concurrency = stats.max_concurrency = limits.concurrency

    @asynccontextmanager
    async def slot(self, tokens: int = 0) -> AsyncIterator[Ticket]:
        """Hold one admitted request for the duration of the `async with` body."""
        epoch = await self.concurrency.acquire()
        self.stats.in_flight += 1
        try:
            await self._wait_turn(tokens)
            self.stats.requests += 1
            yield Ticket(epoch)
        finally:
            self.stats.in_flight -= 1
            self.concurrency.release()

    async def _wait_turn(self, tokens: int) -> None:
        while True:
            pause = self._paused_until - self._clock()
            if pause > 0:
                await self._sleep(pause)
                continue
            await self.requests.acquire(1)
            if self.tokens.per_minute is not None:
                await self.tokens.acquire(max(1, tokens))
            if self._paused_until <= self._clock():
                return
            # A 429 arrived while we were being paced: wait out the cool-down, then take a new turn.

    def on_success(self, ticket: Ticket) -> None:
        now = self._clock()
        self._cooldown = DEFAULT_COOLDOWN
        if self.limits.adaptive:
            self.concurrency.on_success()
            self.stats.concurrency = self.concurrency.limit
            self._successes.append(now)
            while self._successes and self._successes[0] < now - 60.0:
                self._successes.popleft()
            self._probe_upwards(now)

    def on_failure(self, ticket: Ticket, error: CallFailed) -> None:
        if error.code == 429:
            self._on_rate_limited(ticket, error)
        elif error.code == 503 and self.limits.adaptive:
            # "The model is overloaded": fewer requests in flight is the only help we can give.
            self.concurrency.on_overload(ticket.epoch)
            self.stats.concurrency = self.concurrency.limit

    def _on_rate_limited(self, ticket: Ticket, error: CallFailed) -> None:
        now = self._clock()
        self.stats.rate_limited += 1
        self._last_429 = now
        if error.retry_delay is not None:
            delay = error.retry_delay
        else:
            delay = self._cooldown
            self._cooldown = min(MAX_COOLDOWN, self._cooldown * 2)
        # Jitter spreads the restart so the pool does not hit the fresh window all at once.
        until = now + delay + self._rng() * min(1.0, 0.1 * delay + 0.05)
        self._paused_until = max(self._paused_until, until)
        self.stats.paused_until = self._paused_until
        if not self.limits.adaptive:
            return
        self.concurrency.on_overload(ticket.epoch)
        self.stats.concurrency = self.concurrency.limit
        self._learn_rate(error, now)

    def _learn_rate(self, error: CallFailed, now: float) -> None:
        announced = [v for v in error.violations if v.limit and v.per_minute]
        for violation in announced:
            limiter, user_cap = (
                (self.tokens, self.limits.tpm) if violation.tokens else (self.requests, self.limits.rpm)
            )
            rate = violation.limit * QUOTA_SAFETY
            if user_cap:  # the user's own cap still holds, as does the pace they set under it
                rate = min(rate, _under(user_cap) or rate)
            limiter.per_minute = rate
            if not violation.tokens:
                self._rate_inferred = False
                self.stats.learned_rpm = limiter.per_minute
        if announced or any(v.tokens for v in error.violations):
            return
        # No announced limit: settle under the rate the server actually admitted recently.
        span = min(60.0, max(1.0, now - self._started))
        admitted = sum(1 for t in self._successes if t >= now - span)
        if admitted == 0:
            return
        observed = admitted / span * 60.0 * OBSERVED_SAFETY
        current = self.requests.per_minute
        if current is None or observed < current:
            self.requests.per_minute = observed
            self._rate_inferred = True
            self.stats.learned_rpm = observed

    def _probe_upwards(self, now: float) -> None:
        """An inferred rate may be too cautious: raise it a little after each quiet period."""
        if not self._rate_inferred or now - self._last_429 < PROBE_PERIOD:
            return
        current = self.requests.per_minute or 0.0
        raised = current * PROBE_FACTOR
        cap = _under(self.limits.rpm)
        if cap is not None and raised >= cap:
            self.requests.per_minute = cap
            self._rate_inferred = False
        else:
            self.requests.per_minute = raised
        self.stats.learned_rpm = self.requests.per_minute
        self._last_429 = now  # the next probe waits another quiet period
