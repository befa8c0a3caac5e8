"""Admission of requests: per-model cool-down and request and token pacing, adaptive concurrency, 429s."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import NamedTuple

from gembulk.concurrency import AdaptiveConcurrency
from gembulk.ratelimit import RateLimiter, Sent, TokenWindow
from gembulk.records import CallFailed, Usage
from gembulk.stats import RunStats
from gembulk.tokens import TokenCalibration, TokenEstimate

logger = logging.getLogger(__name__)

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
# A token 429 although tokens were paced: the token pace drops by this factor (once per burst of
# 429s), never below TOKEN_FLOOR of the quota, and climbs back by TOKEN_RECOVERY after each quiet
# period (PROBE_PERIOD, or twice the server's longest RetryInfo delay: a minute-long window needs
# longer to show whether the pace fits).
TOKEN_BACKOFF = 0.85
TOKEN_FLOOR = 0.5
TOKEN_RECOVERY = 1.05
# countTokens calls per model that calibrate the estimate before its first answer, when its tokens
# are paced from the start (--tpm) or since a token 429.
CALIBRATION_SAMPLE = 3


def _under(rate: float | None) -> float | None:
    return rate * USER_RATE_SAFETY if rate is not None else None


@dataclass(frozen=True)
class Limits:
    """What the user asked for: a hard in-flight cap and optional per-minute rates (per model)."""

    concurrency: int = 32
    rpm: float | None = None
    tpm: float | None = None
    adaptive: bool = True


class Ticket(NamedTuple):  # built once per request: a NamedTuple is cheaper than a frozen dataclass
    """An admitted request: what it was dispatched under, to settle its tokens and filter stale signals."""

    epoch: int  # the concurrency epoch
    model: str = ""
    estimate: TokenEstimate | None = None
    sent: Sent | None = None  # its tokens in the model's token window, when tokens are paced
    token_epoch: int = 0


class ModelPace:
    """What the scheduler knows of one model's quotas: each model has its own on the real API."""

    def __init__(
        self, limits: Limits, clock: Callable[[], float], sleep: Callable[[float], Awaitable[None]]
    ) -> None:
        self.requests = RateLimiter(_under(limits.rpm), clock=clock, sleep=sleep)
        self.tokens = TokenWindow(_under(limits.tpm), clock=clock, sleep=sleep)
        self.calibration = TokenCalibration()
        self.paused_until = 0.0
        self.cooldown = DEFAULT_COOLDOWN
        self.successes: deque[tuple[float, int]] = deque()  # (time, prompt tokens) of the last minute
        self.started = clock()
        self.rate_inferred = False
        self.last_429 = 0.0
        self.token_ceiling = _under(limits.tpm)  # the token pace before any backoff
        self.token_factor = 1.0
        self.token_epoch = 0  # bumped on each token backoff
        self.last_token_429 = 0.0
        self.token_quiet = PROBE_PERIOD
        self.samples = 0  # countTokens calibration calls started

    def cost(self, estimate: TokenEstimate | None) -> Callable[[], float]:
        if estimate is None:
            return lambda: 1.0
        return lambda: self.calibration.expected(estimate)


class Scheduler:
    """Decides when each request may start.

    Order of admission: a concurrency slot first (so a waiting request holds its place), then the
    model's cool-down, then its request and token pacing. A 429 cools the model's whole pool down for
    the server's RetryInfo delay and learns the quota it names (QuotaFailure): a request quota halves
    the concurrency limit and caps the request rate at the announced quota (or under the rate the
    server was seen to admit); an input-token quota paces tokens instead, and lowers that pace when
    tokens were already paced. Tokens are reserved before a request is sent, at the estimate
    calibrated by the model's earlier counts, and settled with the server's count after the answer.
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
        self._paces: dict[str, ModelPace] = {}
        stats.concurrency = stats.max_concurrency = limits.concurrency

    def pace(self, model: str = "") -> ModelPace:
        found = self._paces.get(model)
        if found is None:
            found = self._paces[model] = ModelPace(self.limits, self._clock, self._sleep)
        return found

    @asynccontextmanager
    async def slot(self, model: str = "", estimate: TokenEstimate | None = None) -> AsyncIterator[Ticket]:
        """Hold one admitted request for the duration of the `async with` body."""
        pace = self.pace(model)
        epoch = await self.concurrency.acquire()
        self.stats.in_flight += 1
        try:
            sent = await self._wait_turn(pace, estimate)
            self.stats.requests += 1
            yield Ticket(epoch, model, estimate, sent, pace.token_epoch)
        finally:
            self.stats.in_flight -= 1
            self.concurrency.release()

    async def _wait_turn(self, pace: ModelPace, estimate: TokenEstimate | None) -> Sent | None:
        while True:
            pause = pace.paused_until - self._clock()
            if pause > 0:
                await self._sleep(pause)
                continue
            await pace.requests.acquire(1)
            if pace.paused_until > self._clock():
                continue  # a 429 arrived while we were being paced: wait it out, take a new turn
            if pace.tokens.per_minute is None:
                return None
            # Tokens last: their window logs the request as sent now. It waits out a later cool-down.
            return await pace.tokens.acquire(pace.cost(estimate))

    def wants_count(self, model: str) -> bool:
        """Whether to countTokens this request's prompt first, to calibrate a token-paced model early."""
        pace = self.pace(model)
        if pace.tokens.per_minute is None or pace.calibration.calibrated:
            return False
        if pace.samples >= CALIBRATION_SAMPLE:
            return False
        pace.samples += 1
        return True

    def learn_count(self, model: str, estimated: int, counted: int) -> None:
        """A countTokens answer for a prompt of `estimated` tokens (uncalibrated)."""
        pace = self.pace(model)
        pace.calibration.learn_text(estimated, counted)
        pace.tokens.refresh()

    def on_success(self, ticket: Ticket, usage: Usage | None = None) -> None:
        """An answer came (whatever its content): settle its tokens, learn the count, grow back."""
        now = self._clock()
        pace = self.pace(ticket.model)
        pace.cooldown = DEFAULT_COOLDOWN
        counted = usage.prompt_tokens if usage is not None and usage.prompt_tokens > 0 else None
        if counted is not None and ticket.estimate is not None:
            first = not pace.calibration.calibrated
            pace.calibration.learn(ticket.estimate, counted)
            if first:
                pace.tokens.refresh()  # the waiting requests drop the start-up margin
        if ticket.sent is not None and counted is not None:
            pace.tokens.settle(ticket.sent, counted)
        if self.limits.adaptive:
            self.concurrency.on_success()
            self.stats.concurrency = self.concurrency.limit
            tokens = counted or (pace.calibration.expected(ticket.estimate) if ticket.estimate else 0)
            pace.successes.append((now, tokens))
            while pace.successes and pace.successes[0][0] < now - 60.0:
                pace.successes.popleft()
            self._probe_upwards(pace, now)
            self._recover_tokens(pace, now)

    def on_failure(self, ticket: Ticket, error: CallFailed) -> None:
        pace = self.pace(ticket.model)
        if ticket.sent is not None and error.code is not None and 400 <= error.code < 500:
            # Refused (a 429 included): the server did not count it. A 5xx or a lost connection may
            # have been counted, so its reservation stands.
            pace.tokens.release(ticket.sent)
        if error.code == 429:
            self._on_rate_limited(pace, ticket, error)
        elif error.code == 503 and self.limits.adaptive:
            # "The model is overloaded": fewer requests in flight is the only help we can give.
            self.concurrency.on_overload(ticket.epoch)
            self.stats.concurrency = self.concurrency.limit

    def _on_rate_limited(self, pace: ModelPace, ticket: Ticket, error: CallFailed) -> None:
        now = self._clock()
        self.stats.rate_limited += 1
        pace.last_429 = now
        if error.retry_delay is not None:
            delay = error.retry_delay
        else:
            delay = pace.cooldown
            pace.cooldown = min(MAX_COOLDOWN, pace.cooldown * 2)
        # One over-full window, one pause: every 429 of the burst ends up at about the same time.
        # Jitter spreads the restart so the pool does not hit the fresh window all at once.
        until = now + delay + self._rng() * min(1.0, 0.1 * delay + 0.05)
        pace.paused_until = max(pace.paused_until, until)
        pace.tokens.hold_until(pace.paused_until)
        self.stats.paused_until = max(self.stats.paused_until, pace.paused_until)
        if not self.limits.adaptive:
            return
        tokens_only = bool(error.violations) and all(v.tokens for v in error.violations)
        if not tokens_only:
            # Too many requests (or the server did not say what): fewer in flight. A token quota is
            # not helped by fewer requests in flight, only by fewer tokens a second.
            self.concurrency.on_overload(ticket.epoch)
            self.stats.concurrency = self.concurrency.limit
            self._learn_request_rate(pace, error, now)
        if any(v.tokens for v in error.violations):
            self._learn_token_rate(pace, ticket, error, now)
        logger.debug(
            "429 for %s (%s, its tokens %s): paused %.2f s; concurrency %d, requests/min %s, tokens/min %s",
            ticket.model or "the model",
            ", ".join(v.quota_id for v in error.violations) or "no QuotaFailure",
            "paced" if ticket.sent is not None else "not paced",
            pace.paused_until - now,
            self.concurrency.limit,
            pace.requests.per_minute,
            pace.tokens.per_minute,
        )

    def _learn_request_rate(self, pace: ModelPace, error: CallFailed, now: float) -> None:
        announced = [v.limit for v in error.violations if v.limit and v.per_minute and not v.tokens]
        if announced:
            rate = min(announced) * QUOTA_SAFETY
            cap = _under(self.limits.rpm)
            pace.requests.per_minute = min(rate, cap) if cap else rate  # the user's pace still holds
            pace.rate_inferred = False
            self.stats.learned_rpm = pace.requests.per_minute
            return
        if any(v.tokens for v in error.violations):
            return  # the token pace answers a token quota
        # No announced value: settle under the rate the server actually admitted recently.
        span = min(60.0, max(1.0, now - pace.started))
        admitted = sum(1 for t, _ in pace.successes if t >= now - span)
        if admitted == 0:
            return
        observed = admitted / span * 60.0 * OBSERVED_SAFETY
        current = pace.requests.per_minute
        if current is None or observed < current:
            pace.requests.per_minute = observed
            pace.rate_inferred = True
            self.stats.learned_rpm = observed

    def _learn_token_rate(self, pace: ModelPace, ticket: Ticket, error: CallFailed, now: float) -> None:
        announced = [v.limit for v in error.violations if v.tokens and v.per_minute and v.limit]
        ceiling = pace.token_ceiling
        if announced:
            ceiling = min(announced) * QUOTA_SAFETY
            cap = _under(self.limits.tpm)
            ceiling = min(ceiling, cap) if cap else ceiling
        elif ceiling is None:
            # A token quota without its value: a little under the tokens the server admitted.
            span = min(60.0, max(1.0, now - pace.started))
            admitted = sum(tokens for t, tokens in pace.successes if t >= now - span)
            if admitted:
                ceiling = admitted / span * 60.0 * OBSERVED_SAFETY
        if ceiling is None:
            return
        if ticket.sent is not None and ticket.token_epoch == pace.token_epoch:
            # Refused although its tokens were paced: the pace is too fast for this quota (shared with
            # another client, or a count the estimate missed). Once per burst: the others of the
            # burst were admitted under the same pace.
            pace.token_factor = max(TOKEN_FLOOR, pace.token_factor * TOKEN_BACKOFF)
            pace.token_epoch += 1
            pace.tokens.shorten()
        pace.token_ceiling = ceiling
        pace.last_token_429 = now
        if error.retry_delay is not None:
            pace.token_quiet = max(pace.token_quiet, 2 * error.retry_delay)
        pace.tokens.per_minute = ceiling * pace.token_factor

    def _recover_tokens(self, pace: ModelPace, now: float) -> None:
        """A lowered token pace climbs back towards the quota after each quiet period."""
        if pace.token_factor >= 1.0 or pace.token_ceiling is None:
            return
        if now - pace.last_token_429 < pace.token_quiet:
            return
        pace.token_factor = min(1.0, pace.token_factor * TOKEN_RECOVERY)
        pace.tokens.per_minute = pace.token_ceiling * pace.token_factor
        pace.last_token_429 = now  # the next step waits another quiet period

    def _probe_upwards(self, pace: ModelPace, now: float) -> None:
        """An inferred rate may be too cautious: raise it a little after each quiet period."""
        if not pace.rate_inferred or now - pace.last_429 < PROBE_PERIOD:
            return
        current = pace.requests.per_minute or 0.0
        raised = current * PROBE_FACTOR
        cap = _under(self.limits.rpm)
        if cap is not None and raised >= cap:
            pace.requests.per_minute = cap
            pace.rate_inferred = False
        else:
            pace.requests.per_minute = raised
        self.stats.learned_rpm = pace.requests.per_minute
        pace.last_429 = now  # the next probe waits another quiet period
