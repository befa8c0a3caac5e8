"""Pacing of request starts to a per-minute rate (requests or tokens), on an injectable clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Spaces acquisitions so that `amount` units per minute are never exceeded.

    GCRA, the "virtual scheduling" variant (https://en.wikipedia.org/wiki/Generic_cell_rate_algorithm):
    each acquisition advances a theoretical arrival time (TAT) by amount/rate. A caller reserves its
    slot before sleeping, so concurrent callers queue in arrival order without a lock. Smooth pacing
    (no burst beyond `burst` units) is deliberate: servers enforce quotas over windows that may be far
    shorter than a minute, and a burst of a minute's worth of requests would be refused.
    """

    def __init__(
        self,
        per_minute: float | None,
        *,
        burst: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._burst = max(1.0, burst)
        self._tat = clock()
        self.per_minute = per_minute

    @property
    def per_minute(self) -> float | None:
        """The current rate; None means unlimited."""
        return self._per_minute

    @per_minute.setter
    def per_minute(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate must be positive")
        self._per_minute = value

    def reserve(self, amount: float = 1.0) -> float:
        """Book the next slot for `amount` units; returns how long the caller must wait for it."""
        if self._per_minute is None:
            return 0.0
        now = self._clock()
        interval = 60.0 * amount / self._per_minute
        tolerance = 60.0 * (self._burst - 1.0) / self._per_minute
        tat = max(self._tat, now)
        self._tat = tat + interval
        return max(0.0, tat - tolerance - now)

    async def acquire(self, amount: float = 1.0) -> None:
        """Wait until `amount` more units fit under the rate."""
        delay = self.reserve(amount)
        if delay > 0:
            await self._sleep(delay)
