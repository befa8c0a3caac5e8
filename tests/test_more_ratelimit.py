"""TokenWindow and RateLimiter edge paths on manual clocks: rates changed or lifted while requests wait,
admissions given back when their request will never be sent, room freed by a lower count."""

from __future__ import annotations

import asyncio

import pytest

from gembulk.ratelimit import RateLimiter, TokenWindow
from tests.clock import FakeClock, SteppedClock, settle


def window(per_minute: float | None = 6000) -> tuple[TokenWindow, SteppedClock]:
    """100 tokens a second by default, on a one-second window that never grows."""
    clock = SteppedClock()
    tokens = TokenWindow(per_minute, clock=clock, sleep=clock.sleep)
    tokens.shorten()
    return tokens, clock


@pytest.mark.parametrize("rate", [0, -1.0])
def test_a_rate_must_be_positive(rate: float) -> None:
    with pytest.raises(ValueError, match="rate must be positive"):
        TokenWindow(rate)
    with pytest.raises(ValueError, match="rate must be positive"):
        RateLimiter(rate)
    limiter = TokenWindow(60)
    with pytest.raises(ValueError):
        limiter.per_minute = rate
    assert limiter.per_minute == 60  # a refused change changes nothing


async def test_lifting_the_rate_admits_every_waiter_unlogged() -> None:
    tokens, _ = window()
    first = await tokens.acquire(100)
    assert first is not None
    waiting = [asyncio.create_task(tokens.acquire(80)) for _ in range(3)]
    await settle()
    assert not any(task.done() for task in waiting)
    tokens.per_minute = None  # the quota is lifted (no --tpm any more)
    await settle()
    assert [task.result() for task in waiting] == [None, None, None]
    assert tokens.used() == 100  # only what was logged before
    assert await tokens.acquire(10**9) is None


async def test_raising_the_rate_admits_a_waiter_without_time_passing() -> None:
    tokens, _ = window()
    await tokens.acquire(90)
    waiting = asyncio.create_task(tokens.acquire(50))
    await settle()
    assert not waiting.done()
    tokens.per_minute = 12000  # 200 a second: 90 + 50 now fits
    await settle()
    assert waiting.done() and tokens.used() == 140


async def test_an_admission_cancelled_before_its_request_runs_gives_its_tokens_back() -> None:
    tokens, _ = window()
    first = await tokens.acquire(90)
    assert first is not None
    waiting = asyncio.create_task(tokens.acquire(50))
    await settle()
    tokens.release(first)  # room: the waiter is admitted (its future resolved) ...
    waiting.cancel()  # ... and cancelled before its task runs again (Ctrl-C at that moment)
    await settle()
    assert waiting.cancelled()
    assert tokens.used() == 0  # its 50 were never sent, so they are not held


async def test_a_lower_count_lets_a_waiter_in_at_once() -> None:
    tokens, clock = window()
    first = await tokens.acquire(90)
    assert first is not None
    waiting = asyncio.create_task(tokens.acquire(50))
    await settle()
    assert not waiting.done()
    start = clock.now
    tokens.settle(first, 40)  # the server counted less than estimated
    await settle()
    assert waiting.done() and clock.now == start and tokens.used() == 90


async def test_a_higher_count_holds_the_next_waiter_longer() -> None:
    tokens, clock = window()
    first = await tokens.acquire(40)
    assert first is not None
    tokens.settle(first, 90)  # more than estimated: the window holds 90
    waiting = asyncio.create_task(tokens.acquire(20))
    await settle()
    assert not waiting.done()
    await clock.advance(1.0 + tokens.margin)
    assert waiting.done()


async def test_a_shorter_hold_does_not_cut_a_longer_one() -> None:
    tokens, clock = window()
    tokens.hold_until(clock.now + 10.0)
    tokens.hold_until(clock.now + 2.0)  # a second 429 asking less: the first one still binds
    waiting = asyncio.create_task(tokens.acquire(1))
    await clock.advance(5.0)
    assert not waiting.done()
    await clock.advance(5.0)
    assert waiting.done()


async def test_a_cancelled_waiter_no_longer_holds_back_the_smaller_ones_behind_it() -> None:
    tokens, _ = window()
    await tokens.acquire(60)
    big = asyncio.create_task(tokens.acquire(90))
    await settle()
    small = [asyncio.create_task(tokens.acquire(10)) for _ in range(3)]
    await settle()
    assert all(task.done() for task in small)  # first fit: they pass the big one
    big.cancel()
    await settle()
    assert big.cancelled() and tokens.used() == 90


async def test_a_reservation_for_many_units_waits_in_proportion() -> None:
    clock = FakeClock()
    limiter = RateLimiter(120, clock=clock, sleep=clock.sleep)  # two a second
    assert limiter.reserve(4) == 0.0  # the first goes at once, and books two seconds
    assert limiter.reserve(1) == pytest.approx(2.0)
    limiter.per_minute = None
    assert limiter.reserve(1000) == 0.0  # unlimited: never a wait
    await limiter.acquire(1000)
    assert clock.sleeps == []
