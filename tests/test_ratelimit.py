"""RateLimiter: GCRA pacing measured on a manual clock."""

from __future__ import annotations

import itertools

import pytest

from gembulk.ratelimit import RateLimiter
from tests.clock import FakeClock


async def test_unlimited_never_waits() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    for _ in range(100):
        await limiter.acquire()
    assert clock.sleeps == []


async def test_requests_are_spaced_evenly() -> None:
    clock = FakeClock()
    limiter = RateLimiter(600, clock=clock, sleep=clock.sleep)  # one every 0.1 s
    starts = []
    for _ in range(11):
        await limiter.acquire()
        starts.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert gaps == pytest.approx([0.1] * 10)
    # 11 starts over one second: never more than rate*window in any window
    assert starts[-1] - starts[0] == pytest.approx(1.0)


async def test_idle_time_is_not_banked_into_a_burst() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, clock=clock, sleep=clock.sleep)
    await limiter.acquire()
    clock.advance(100.0)  # a long idle period
    await limiter.acquire()
    await limiter.acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_burst_allows_that_many_back_to_back() -> None:
    clock = FakeClock()
    limiter = RateLimiter(60, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        await limiter.acquire()
    assert clock.sleeps == []
    await limiter.acquire()
    assert clock.sleeps == [pytest.approx(1.0)]


async def test_amount_weights_the_interval_for_token_pacing() -> None:
    clock = FakeClock()
    limiter = RateLimiter(6000, clock=clock, sleep=clock.sleep)  # 100 tokens per second
    await limiter.acquire(500)
    await limiter.acquire(100)
    assert clock.sleeps == [pytest.approx(5.0)]


def test_reservations_queue_in_order_without_sleeping() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)  # 0.5 s apart
    waits = [limiter.reserve() for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_rate_can_be_lowered_while_running() -> None:
    clock = FakeClock()
    limiter = RateLimiter(None, clock=clock, sleep=clock.sleep)
    assert limiter.reserve() == 0.0
    limiter.per_minute = 30
    assert limiter.reserve() == 0.0
    assert limiter.reserve() == pytest.approx(2.0)


def test_rejects_non_positive_rate() -> None:
    with pytest.raises(ValueError):
        RateLimiter(0)
