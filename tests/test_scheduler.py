"""Scheduler: pool-wide cool-down, rate learning from 429s, adaptive concurrency; on a manual clock."""

from __future__ import annotations

import itertools

import pytest

from gembulk.records import CallFailed, QuotaViolation
from gembulk.scheduler import OBSERVED_SAFETY, QUOTA_SAFETY, USER_RATE_SAFETY, Limits, Scheduler
from gembulk.stats import RunStats
from tests.clock import FakeClock


def make(limits: Limits | None = None) -> tuple[Scheduler, FakeClock, RunStats]:
    clock = FakeClock()
    stats = RunStats()
    scheduler = Scheduler(
        limits or Limits(concurrency=8), stats, clock=clock, sleep=clock.sleep, rng=lambda: 0.0
    )
    return scheduler, clock, stats


def rate_limited(delay: float | None = 2.0, *violations: QuotaViolation) -> CallFailed:
    return CallFailed("RESOURCE_EXHAUSTED", "quota", code=429, retry_delay=delay, violations=violations)


async def test_429_pauses_the_whole_pool_for_the_server_delay() -> None:
    scheduler, clock, stats = make()
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(2.0))
    t0 = clock.now
    async with scheduler.slot():
        pass
    assert clock.now - t0 == pytest.approx(2.0, abs=0.3)
    assert stats.rate_limited == 1


async def test_429_halves_concurrency_once_per_burst() -> None:
    scheduler, _, stats = make(Limits(concurrency=16))
    tickets = []
    for _ in range(5):
        async with scheduler.slot() as ticket:
            tickets.append(ticket)
    for ticket in tickets:
        scheduler.on_failure(ticket, rate_limited(0.1))
    assert scheduler.concurrency.limit == 8
    assert stats.concurrency == 8


async def test_announced_per_minute_quota_sets_the_pace() -> None:
    scheduler, clock, stats = make()
    async with scheduler.slot() as ticket:
        scheduler.on_failure(
            ticket, rate_limited(1.0, QuotaViolation("GenerateRequestsPerMinutePerProjectPerModel", 1200))
        )
    assert scheduler.requests.per_minute == pytest.approx(1200 * QUOTA_SAFETY)
    assert stats.learned_rpm == pytest.approx(1200 * QUOTA_SAFETY)
    starts = []
    for _ in range(5):
        async with scheduler.slot():
            starts.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([60 / (1200 * QUOTA_SAFETY)] * 4)


async def test_user_rpm_is_never_exceeded_by_a_learned_quota() -> None:
    scheduler, _, _ = make(Limits(concurrency=8, rpm=100))
    async with scheduler.slot() as ticket:
        scheduler.on_failure(
            ticket, rate_limited(1.0, QuotaViolation("GenerateRequestsPerMinutePerProjectPerModel", 5000))
        )
    assert scheduler.requests.per_minute == pytest.approx(100 * USER_RATE_SAFETY)


async def test_announced_token_quota_paces_tokens() -> None:
    scheduler, _, _ = make()
    violation = QuotaViolation("GenerateContentInputTokensPerModelPerMinute-FreeTier", 250_000)
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(1.0, violation))
    assert scheduler.tokens.per_minute == pytest.approx(250_000 * QUOTA_SAFETY)
    assert scheduler.requests.per_minute is None


async def test_without_announced_quota_the_rate_settles_under_the_admitted_rate() -> None:
    scheduler, clock, stats = make()
    for _ in range(20):  # 20 successes over 10 s: 2 per second admitted
        async with scheduler.slot() as ticket:
            scheduler.on_success(ticket)
        clock.advance(0.5)
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(None))
    assert scheduler.requests.per_minute == pytest.approx(20 / 10 * 60 * OBSERVED_SAFETY, rel=0.1)
    assert stats.learned_rpm is not None


async def test_inferred_rate_is_probed_upwards_after_quiet_periods() -> None:
    scheduler, clock, _ = make()
    for _ in range(10):
        async with scheduler.slot() as ticket:
            scheduler.on_success(ticket)
        clock.advance(1.0)
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(None))
    learned = scheduler.requests.per_minute
    assert learned is not None
    clock.advance(6.0)
    async with scheduler.slot() as ticket:
        scheduler.on_success(ticket)
    assert scheduler.requests.per_minute == pytest.approx(learned * 1.1)


async def test_429_without_retry_info_backs_off_exponentially() -> None:
    scheduler, clock, _ = make()
    pauses = []
    for _ in range(3):
        async with scheduler.slot() as ticket:
            start = clock.now
            scheduler.on_failure(ticket, rate_limited(None))
        async with scheduler.slot():
            pauses.append(clock.now - start)
    assert pauses == pytest.approx([1.0, 2.0, 4.0], abs=0.3)


async def test_503_reduces_concurrency_without_pausing() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8))
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, CallFailed("UNAVAILABLE", "overloaded", code=503))
    t0 = clock.now
    async with scheduler.slot():
        pass
    assert scheduler.concurrency.limit == 4
    assert clock.now == t0


async def test_non_adaptive_keeps_concurrency_but_still_cools_down() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8, adaptive=False))
    async with scheduler.slot() as ticket:
        scheduler.on_failure(ticket, rate_limited(3.0))
    t0 = clock.now
    async with scheduler.slot():
        pass
    assert scheduler.concurrency.limit == 8
    assert clock.now - t0 == pytest.approx(3.0, abs=0.4)


async def test_slot_counts_in_flight_and_requests() -> None:
    scheduler, _, stats = make()
    async with scheduler.slot():
        assert stats.in_flight == 1
    assert stats.in_flight == 0
    assert stats.requests == 1


async def test_user_rpm_is_paced_a_hair_under() -> None:
    scheduler, clock, _ = make(Limits(concurrency=8, rpm=600))
    starts = []
    for _ in range(3):
        async with scheduler.slot():
            starts.append(clock.now)
    assert starts[2] - starts[1] == pytest.approx(0.1 / USER_RATE_SAFETY)
