"""RateLimiter (GCRA pacing) and TokenWindow (the token log), measured on manual clocks."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from gembulk.ratelimit import MAX_BYPASS, RateLimiter, TokenWindow
from tests.clock import FakeClock, SteppedClock, settle


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


# -- TokenWindow: the input-token log -------------------------------------------------------------


def window_sums(starts: list[tuple[float, float]], window: float = 1.0) -> float:
    """The most tokens any `window` seconds (ending at a start) held."""
    return max(sum(k for s, k in starts if end - window < s <= end) for end, _ in starts)


async def test_uneven_requests_never_overfill_a_second() -> None:
    clock = FakeClock()
    tokens = TokenWindow(36_000, clock=clock, sleep=clock.sleep)  # 600 tokens a second
    rng = random.Random(3)
    starts = []
    for _ in range(300):
        amount = rng.randint(40, 150)
        await tokens.acquire(amount)
        starts.append((clock.now, amount))
    assert window_sums(starts) <= 600
    rate = sum(k for _, k in starts) / (starts[-1][0] - starts[0][0])
    assert rate > 0.85 * 600  # one at a time (no lookahead) still fills most of each second


def one_second_window(clock: FakeClock | SteppedClock) -> TokenWindow:
    """6,000 tokens a minute (100 a second), kept to a one-second window whatever the requests' size."""
    tokens = TokenWindow(6000, clock=clock, sleep=clock.sleep)
    tokens.shorten()
    return tokens


async def test_a_request_larger_than_a_second_goes_alone_and_counts_for_its_seconds() -> None:
    clock = FakeClock()
    tokens = one_second_window(clock)
    await tokens.acquire(300)
    start = clock.now
    await tokens.acquire(50)
    assert clock.now - start == pytest.approx(3.0 + tokens.margin)


async def test_requests_large_for_the_quota_get_a_longer_window_that_divides_a_minute() -> None:
    clock = FakeClock()
    tokens = TokenWindow(6000, clock=clock, sleep=clock.sleep)  # 100 a second
    starts = []
    for _ in range(150):  # 80 tokens: one a second in a 1 s window would leave 20 % of it unused
        sent = await tokens.acquire(80)
        assert sent is not None
        tokens.settle(sent, 80)  # the window learns the usual size from the counts
        starts.append((clock.now, 80))
    assert tokens.window == 10.0  # 8 requests of 80 at 100 a second: 6.4 s, the next divisor of 60
    assert window_sums(starts, 60.0) <= 6000  # a minute never holds more than the quota
    rate = sum(k for _, k in starts) / (starts[-1][0] - starts[0][0])
    assert rate > 0.95 * 100
    for _ in range(30):  # smaller requests later: the window never shrinks (it would forget entries)
        sent = await tokens.acquire(10)
        assert sent is not None
        tokens.settle(sent, 10)
    assert tokens.window == 10.0
    tokens.shorten()
    assert tokens.window == 1.0


async def test_a_longer_window_counts_again_what_the_shorter_one_let_go() -> None:
    clock = FakeClock()
    tokens = TokenWindow(6000, clock=clock, sleep=clock.sleep)  # 100 a second
    sent = None
    for step in (1.0,) * 7 + (0.5,):
        sent = await tokens.acquire(20)
        assert sent is not None
        tokens.settle(sent, 20)  # 5 of 20 fit in a second: no need for a longer window
        clock.advance(step)
    assert tokens.window == 1.0 and tokens.used() == 20
    assert sent is not None
    tokens.settle(sent, 400)  # larger counts: a second holds fewer than 4 of the usual size
    assert tokens.window == 5.0
    assert tokens.used() == 4 * 20 + 400  # the four before it are back in the window


async def test_unlimited_logs_nothing() -> None:
    tokens = TokenWindow(None)
    assert await tokens.acquire(10**9) is None


async def test_settlement_corrects_what_the_window_holds() -> None:
    clock = FakeClock()
    tokens = one_second_window(clock)
    sent = await tokens.acquire(30)
    assert sent is not None
    tokens.settle(sent, 90)  # the server counted three times the estimate
    assert tokens.used() == 90
    start = clock.now
    await tokens.acquire(20)  # 90 + 20 > 100: waits for the second to pass
    assert clock.now > start
    clock.advance(5.0)
    other = await tokens.acquire(60)
    assert other is not None
    tokens.settle(other, 20)  # three times too high: the room comes back at once
    assert tokens.used() == 20
    tokens.release(other)  # refused after all (a 429): nothing counted
    assert tokens.used() == 0


async def test_a_count_known_after_the_second_passed_is_still_paid_for() -> None:
    clock = FakeClock()
    tokens = one_second_window(clock)
    sent = await tokens.acquire(30)
    assert sent is not None
    clock.advance(2.0)  # a slow answer: its entry has left the window
    tokens.settle(sent, 80)
    assert tokens.used() == 50  # the difference is owed now
    tokens.settle(sent, 10)  # a lower count, too late to give anything back
    assert tokens.used() == 50


async def test_a_smaller_request_may_pass_one_that_does_not_fit() -> None:
    clock = SteppedClock()
    tokens = one_second_window(clock)
    await tokens.acquire(70)
    big = asyncio.create_task(tokens.acquire(50))
    await settle()
    small = asyncio.create_task(tokens.acquire(20))
    await settle()
    assert small.done() and not big.done()
    await clock.advance(1.0 + tokens.margin)
    assert big.done()


async def test_a_waiter_is_passed_over_a_bounded_number_of_times() -> None:
    clock = SteppedClock()
    tokens = one_second_window(clock)
    await tokens.acquire(10)  # the big one below never fits next to anything
    big = asyncio.create_task(tokens.acquire(95))
    await settle()
    passed = 0
    for _ in range(MAX_BYPASS + 3):
        small = asyncio.create_task(tokens.acquire(5))
        await settle()
        if not small.done():
            small.cancel()
            break
        passed += 1
    assert passed == MAX_BYPASS
    await clock.advance(1.0 + tokens.margin)
    assert big.done()


async def test_a_waiter_cancelled_before_its_clean_up_is_never_admitted() -> None:
    clock = SteppedClock()
    tokens = one_second_window(clock)
    first = await tokens.acquire(90)
    assert first is not None
    waiting = asyncio.create_task(tokens.acquire(50))
    await settle()
    waiting.cancel()  # Ctrl-C: its future is cancelled now, its clean-up runs on its next turn
    tokens.release(first)  # room appears before that turn
    await settle()
    assert waiting.cancelled()
    assert tokens.used() == 0


async def test_nothing_is_admitted_while_held() -> None:
    clock = SteppedClock()
    tokens = TokenWindow(6000, clock=clock, sleep=clock.sleep)
    tokens.hold_until(clock.now + 30.0)
    waiting = asyncio.create_task(tokens.acquire(1))
    await clock.advance(29.0)
    assert not waiting.done()
    await clock.advance(1.0)
    assert waiting.done()


async def test_waiters_see_a_better_estimate_when_it_comes() -> None:
    clock = SteppedClock()
    tokens = TokenWindow(6000, clock=clock, sleep=clock.sleep)
    await tokens.acquire(50)
    estimate = [200.0]  # uncalibrated: would not fit next to the 50
    waiting = asyncio.create_task(tokens.acquire(lambda: estimate[0]))
    await settle()
    assert not waiting.done()
    estimate[0] = 40.0  # the first count arrived
    tokens.refresh()
    await settle()
    assert waiting.done()
