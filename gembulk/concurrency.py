"""The in-flight cap: an adaptive concurrency limit (AIMD) under the user's hard maximum."""

from __future__ import annotations

import asyncio
from collections import deque


class AdaptiveConcurrency:
    """Caps requests in flight; halves the cap on overload and grows it back on success.

    Additive increase, multiplicative decrease, as TCP congestion control does: after `limit`
    consecutive successes the limit grows by one (up to `maximum`); an overload signal halves it
    (down to `minimum`). Overload signals from requests dispatched before the last decrease are
    ignored (they report on the old limit), so one burst of 429s halves the limit once, not ten times.
    """

    def __init__(self, maximum: int, *, initial: int | None = None, minimum: int = 1) -> None:
        if maximum < 1:
            raise ValueError("maximum concurrency must be at least 1")
        self.maximum = maximum
        self.minimum = max(1, min(minimum, maximum))
        self.limit = max(self.minimum, min(initial or maximum, maximum))
        self.in_flight = 0
        self.epoch = 0  # bumped on each decrease
        self._successes = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> int:
        """Wait for a free slot; returns the epoch the request is dispatched in."""
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up we consumed on to the next waiter
                raise
        self.in_flight += 1
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        free = self.limit - self.in_flight
        while free > 0 and self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def on_success(self) -> None:
        self._successes += 1
        if self._successes >= self.limit and self.limit < self.maximum:
            self.limit += 1
            self._successes = 0
            self._wake()

    def on_overload(self, dispatched_epoch: int) -> bool:
        """Halve the limit unless this signal is stale; returns whether the limit changed."""
        if dispatched_epoch < self.epoch:
            return False
        self.epoch += 1
        self._successes = 0
        new_limit = max(self.minimum, self.limit // 2)
        changed = new_limit != self.limit
        self.limit = new_limit
        return changed
