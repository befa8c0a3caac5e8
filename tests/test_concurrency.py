"""AdaptiveConcurrency: the in-flight cap, AIMD, and stale-signal filtering."""

from __future__ import annotations

import asyncio

import pytest

from gembulk.concurrency import AdaptiveConcurrency


async def test_never_more_in_flight_than_the_limit() -> None:
    limiter = AdaptiveConcurrency(3)
    peak = 0

    async def job() -> None:
        nonlocal peak
        await limiter.acquire()
        peak = max(peak, limiter.in_flight)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        limiter.release()

    await asyncio.gather(*(job() for _ in range(20)))
    assert peak == 3
    assert limiter.in_flight == 0


async def test_overload_halves_and_success_grows_back_additively() -> None:
    limiter = AdaptiveConcurrency(16)
    epoch = await limiter.acquire()
    limiter.release()
    assert limiter.on_overload(epoch) is True
    assert limiter.limit == 8
    for _ in range(7):
        limiter.on_success()
    assert limiter.limit == 8
    limiter.on_success()  # 8 successes at limit 8: +1
    assert limiter.limit == 9
    for _ in range(200):
        limiter.on_success()
    assert limiter.limit == 16  # never above the user's cap


async def test_one_burst_of_429s_halves_once() -> None:
    limiter = AdaptiveConcurrency(32)
    epochs = [await limiter.acquire() for _ in range(10)]
    for epoch in epochs:
        limiter.on_overload(epoch)
    assert limiter.limit == 16
    # a request dispatched after the decrease counts again
    for _ in range(10):
        limiter.release()
    fresh = await limiter.acquire()
    limiter.on_overload(fresh)
    assert limiter.limit == 8


async def test_limit_floor_is_minimum() -> None:
    limiter = AdaptiveConcurrency(4, minimum=1)
    for _ in range(10):
        limiter.on_overload(limiter.epoch)
    assert limiter.limit == 1


async def test_lowered_limit_blocks_until_enough_released() -> None:
    limiter = AdaptiveConcurrency(4)
    for _ in range(4):
        await limiter.acquire()
    limiter.on_overload(limiter.epoch)  # limit 2 while 4 are in flight
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()
    limiter.release()
    await asyncio.sleep(0)
    assert not waiter.done()  # 2 in flight == limit 2
    limiter.release()
    await asyncio.wait_for(waiter, 1)
    assert limiter.in_flight == 2


async def test_cancelled_waiter_passes_its_wakeup_on() -> None:
    limiter = AdaptiveConcurrency(1)
    await limiter.acquire()
    first = asyncio.create_task(limiter.acquire())
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    limiter.release()
    first.cancel()
    await asyncio.sleep(0)
    await asyncio.wait_for(second, 1)
    assert limiter.in_flight == 1


def test_rejects_zero() -> None:
    with pytest.raises(ValueError):
        AdaptiveConcurrency(0)
