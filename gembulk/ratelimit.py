"""Pacing to per-minute rates on an injectable clock: request starts (GCRA) and input tokens (a 1 s log)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
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


# A waiter that does not fit may be passed over by smaller ones behind it at most this many times.
MAX_BYPASS = 8


class Sent:
    """Tokens the window holds for one admitted request, corrected when the server's count is known."""

    __slots__ = ("at", "expires", "tokens")

    def __init__(self, at: float, tokens: float, expires: float) -> None:
        self.at = at
        self.tokens = tokens
        self.expires = expires


class _Waiter:
    __slots__ = ("passed", "tokens")

    def __init__(self, tokens: float) -> None:
        self.tokens = tokens
        self.passed = 0


class TokenWindow:
    """Admits input tokens so that no `window` seconds hold more than their share of a per-minute rate.

    A log of the tokens sent in the last `window` seconds (1 s: a second's share of the quota), not a
    GCRA. Smooth pacing of requests of uneven size overfills a window by up to one request: 594 tokens
    a second in requests of 95 puts 7 of them (665 tokens) into some 1-second windows of a 600-token
    quota. A log never does, whatever the server's window: one of 60 s is 60 of these seconds, each
    within its share. A request larger than the whole share is sent alone and counts for as many
    seconds as it fills, so the long-run rate holds for it too.

    Waiters are admitted first-fit in arrival order: while the oldest does not fit, a smaller one
    behind it may go (a full window of uneven requests otherwise leaves part of every second unused),
    but no waiter is passed over more than MAX_BYPASS times. Each admission is `Sent` tokens that are
    settled with the server's count after the answer (`settle`), or given back when the server did
    not count the request (`release`). Entries expire `margin` seconds late: the server sees each
    request a few milliseconds after it is admitted here, not always the same few.
    """

    def __init__(
        self,
        per_minute: float | None,
        *,
        window: float = 1.0,
        margin: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.window = window
        self.margin = margin
        self._live: deque[Sent] = deque()  # admitted and not yet expired, in order of expiry
        self._used = 0.0
        self._waiters: list[_Waiter] = []
        self._changed = asyncio.Event()
        self._held_until = 0.0
        self._per_minute: float | None = None
        self.per_minute = per_minute

    @property
    def per_minute(self) -> float | None:
        """The current rate; None means unlimited (nothing is logged then)."""
        return self._per_minute

    @per_minute.setter
    def per_minute(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate must be positive")
        self._per_minute = value
        self._notify()

    @property
    def share(self) -> float:
        """Tokens one window may hold."""
        return (self._per_minute or 0.0) * self.window / 60.0

    def used(self) -> float:
        """Tokens the window holds now."""
        self._expire(self._clock())
        return self._used

    def hold_until(self, when: float) -> None:
        """Admit nothing before `when` (the pool is cooling down after a 429)."""
        if when > self._held_until:
            self._held_until = when
            self._notify()

    async def acquire(self, tokens: float | Callable[[], float]) -> Sent | None:
        """Wait until `tokens` fit and log them; None when the rate is unlimited.

        `tokens` may be a function, asked again at each wake-up: the estimate of a waiting request
        improves as the first counts of a model come in.
        """
        if self._per_minute is None:
            return None
        cost = tokens if callable(tokens) else lambda: tokens
        me = _Waiter(max(1.0, cost()))
        self._waiters.append(me)
        try:
            while True:
                me.tokens = max(1.0, cost())
                now = self._clock()
                if self._held_until > now:
                    await self._wait(self._held_until - now)
                    continue
                if self._per_minute is None:
                    return None
                self._expire(now)
                if self._first_fit() is me:
                    for waiter in self._waiters:
                        if waiter is me:
                            break
                        waiter.passed += 1
                    return self._log(me.tokens, now)
                await self._wait(self._live[0].expires - now if self._live else self.window)
        finally:
            self._waiters.remove(me)
            self._notify()

    def settle(self, sent: Sent, tokens: float) -> None:
        """The server counted `tokens` for this request: correct what the window holds for it.

        After the entry expired, more than was held is still owed (it is logged now, so the next second
        pays for it); less than was held is no use any more.
        """
        now = self._clock()
        self._expire(now)
        if sent.expires > now:
            self._used += tokens - sent.tokens
            sent.tokens = tokens
            expires = self._expiry(sent.at, tokens)
            if expires != sent.expires:  # only a request larger than a window's share lasts longer
                sent.expires = max(expires, now)
                self._live = deque(sorted(self._live, key=lambda s: s.expires))
            self._notify()
        elif tokens > sent.tokens and self._per_minute is not None:
            self._log(tokens - sent.tokens, now)
            sent.tokens = tokens

    def refresh(self) -> None:
        """Wake the waiters to look again (their estimates changed)."""
        self._notify()

    def release(self, sent: Sent) -> None:
        """The server did not count this request (it was refused): its tokens are free again."""
        self.settle(sent, 0.0)

    def _first_fit(self) -> _Waiter | None:
        share = self.share
        for waiter in self._waiters:
            if self._used + waiter.tokens <= share or (self._used < 1 and waiter.tokens > share):
                return waiter
            if waiter.passed >= MAX_BYPASS:
                return None
        return None

    def _expiry(self, at: float, tokens: float) -> float:
        share = self.share
        span = self.window * max(1.0, tokens / share) if share else self.window
        return at + span + self.margin

    def _log(self, tokens: float, now: float) -> Sent:
        sent = Sent(now, tokens, self._expiry(now, tokens))
        self._live.append(sent)
        if len(self._live) > 1 and self._live[-2].expires > sent.expires:
            self._live = deque(sorted(self._live, key=lambda s: s.expires))  # rare: after a large request
        self._used += tokens
        return sent

    def _expire(self, now: float) -> None:
        live = self._live
        while live and live[0].expires <= now:
            self._used -= live.popleft().tokens
        if not live:
            self._used = 0.0  # no drift from float sums

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def _wait(self, delay: float) -> None:
        """Sleep `delay` seconds, or less when the window changes (a settlement, a new rate, a departure)."""
        changed = asyncio.ensure_future(self._changed.wait())
        sleeper = asyncio.ensure_future(self._sleep(max(0.0, delay)))
        try:
            await asyncio.wait((changed, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            changed.cancel()
            sleeper.cancel()
