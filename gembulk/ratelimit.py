"""Pacing to per-minute rates on an injectable clock: request starts (GCRA) and input tokens (a 1 s log)."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable


class _PerMinute:
    """A per-minute rate that may change while in use; None means unlimited."""

    _per_minute: float | None

    @property
    def per_minute(self) -> float | None:
        """The current rate; None means unlimited."""
        return self._per_minute

    @per_minute.setter
    def per_minute(self, value: float | None) -> None:
        if value is not None and value <= 0:
            raise ValueError("rate must be positive")
        self._per_minute = value
        self._rate_changed()

    def _rate_changed(self) -> None:
        """What a new rate changes at once besides later reservations (nothing, unless overridden)."""


class RateLimiter(_PerMinute):
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
# The token log's window. It grows when one second's share holds fewer than FEW_REQUESTS requests of
# the usual size (known after SIZES_SEEN counts), to the shortest of WINDOWS (each divides a minute,
# so a minute-long window is a whole number of them) that holds REQUESTS_PER_WINDOW of them.
WINDOWS = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 10.0, 12.0, 15.0, 20.0, 30.0, 60.0)
FEW_REQUESTS = 4
REQUESTS_PER_WINDOW = 8
SIZES_SEEN = 8


class Sent:
    """Tokens the window holds for one admitted request, corrected when the server's count is known."""

    __slots__ = ("at", "expires", "tokens")

    def __init__(self, at: float, tokens: float, expires: float) -> None:
        self.at = at
        self.tokens = tokens
        self.expires = expires


class _Waiter:
    __slots__ = ("admitted", "cost", "passed", "tokens")

    def __init__(self, cost: Callable[[], float], admitted: asyncio.Future[Sent | None]) -> None:
        self.cost = cost
        self.admitted = admitted
        self.tokens = max(1.0, cost())
        self.passed = 0


class TokenWindow(_PerMinute):
    """Admits input tokens so that no `window` seconds hold more than their share of a per-minute rate.

    A log of the tokens sent in the last `window` seconds, not a GCRA. Smooth pacing of requests of
    uneven size overfills a window by up to one request: 594 tokens a second in requests of 95 puts 7
    of them (665 tokens) into some 1-second windows of a 600-token quota. A log never does, whatever
    the server's window: one of 60 s is 60 one-second windows, each within its share.

    The window is one second (`shortest`) while that holds a few requests. Requests that are large
    for the quota (4,000-token documents under 250,000 TPM: one a second) would leave much of each
    second unused, so the window grows to hold REQUESTS_PER_WINDOW of them, up to a minute: the
    quotas are per minute. It only grows: a longer window counts again the entries a shorter one had
    let go, but a shorter one would forget entries the longer one still counted. A token 429 although
    tokens were paced says the server counts over a shorter window (a compressed test window):
    `shorten` keeps it at `shortest` from then on. A request larger than the whole share is sent
    alone and counts for as many windows as it fills, so the long-run rate holds for it too.

    Waiters are admitted first-fit in arrival order: while the oldest does not fit, a smaller one
    behind it may go (a full window of uneven requests otherwise leaves part of every second unused),
    but no waiter is passed over more than MAX_BYPASS times. Each admission is `Sent` tokens that are
    settled with the server's count after the answer (`settle`), or given back when the server did
    not count the request (`release`). Entries expire `margin` seconds late: the server sees each
    request a few milliseconds after it is admitted here, not always the same few.

    Admission happens in `_pump`, run whenever room may have appeared (a waiter arrives or leaves, a
    count comes back lower, the rate or the hold changes) and by one timer at the next expiry, so
    waiters cost nothing while they wait, however many there are.
    """

    def __init__(
        self,
        per_minute: float | None,
        *,
        shortest: float = 1.0,
        margin: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self.shortest = shortest
        self.margin = margin
        self._typical = 0.0  # moving average of the counts settled
        self._sizes = 0  # counts settled
        self._pinned = False
        self._window = shortest
        self._live: deque[Sent] = deque()  # admitted and not yet expired, in order of expiry
        self._history: deque[Sent] = deque()  # the last minute's entries, in order of time
        self._used = 0.0
        self._waiters: list[_Waiter] = []
        self._held_until = 0.0
        self._timer: asyncio.Task[None] | None = None
        self._timer_at = 0.0
        self._per_minute: float | None = None
        self.per_minute = per_minute

    def _rate_changed(self) -> None:
        """The window may fit the new rate better, and waiters may fit now (None: nothing is logged)."""
        self._rewindow()
        self._pump()

    @property
    def window(self) -> float:
        """Seconds over which the log holds `share` tokens."""
        return self._window

    @property
    def share(self) -> float:
        """Tokens one window may hold."""
        return (self._per_minute or 0.0) * self.window / 60.0

    def shorten(self) -> None:
        """The server's window is shorter than this one: keep to the shortest from now on."""
        self._pinned = True
        self._rewindow()

    def _rewindow(self) -> None:
        """After the window changed, every entry of the last minute expires as if logged under the new
        one: a longer window counts again what a shorter one had already let go."""
        current = window = self._window
        per_second = (self._per_minute or 0.0) / 60.0
        if self._pinned:
            window = self.shortest
        elif (
            per_second
            and self._sizes >= SIZES_SEEN
            and self._typical * FEW_REQUESTS > per_second * self.shortest
        ):
            wanted = REQUESTS_PER_WINDOW * self._typical / per_second
            window = max(current, next((w for w in WINDOWS if w >= wanted), WINDOWS[-1]))
        if window == current:
            return
        self._window = window
        now = self._clock()
        entries = {id(sent): sent for sent in (*self._history, *self._live)}.values()
        for sent in entries:
            sent.expires = self._expiry(sent.at, sent.tokens)
        self._live = deque(sorted((s for s in entries if s.expires > now), key=lambda s: s.expires))
        self._used = sum(sent.tokens for sent in self._live)
        self._pump()

    def used(self) -> float:
        """Tokens the window holds now."""
        self._expire(self._clock())
        return self._used

    def hold_until(self, when: float) -> None:
        """Admit nothing before `when` (the pool is cooling down after a 429)."""
        if when > self._held_until:
            self._held_until = when
            self._pump()

    async def acquire(self, tokens: float | Callable[[], float]) -> Sent | None:
        """Wait until `tokens` fit and log them; None when the rate is unlimited.

        `tokens` may be a function, asked again whenever the waiter is considered: the estimate of a
        waiting request improves as the first counts of a model come in.
        """
        if self._per_minute is None:
            return None
        admitted: asyncio.Future[Sent | None] = asyncio.get_running_loop().create_future()
        me = _Waiter(tokens if callable(tokens) else lambda: tokens, admitted)
        self._waiters.append(me)
        self._pump()
        try:
            return await admitted
        except asyncio.CancelledError:
            if me in self._waiters:
                self._waiters.remove(me)
                self._pump()  # it may have been holding the others back
            elif admitted.done() and not admitted.cancelled() and (sent := admitted.result()) is not None:
                self.release(sent)  # admitted, but it will never be sent
            raise

    def settle(self, sent: Sent, tokens: float) -> None:
        """The server counted `tokens` for this request: correct what the window holds for it.

        After the entry expired, more than was held is still owed (it is logged now, so the next second
        pays for it); less than was held is no use any more.
        """
        now = self._clock()
        if tokens > 0:
            self._sizes += 1
            self._typical += max(0.1, 1.0 / self._sizes) * (tokens - self._typical)
            self._rewindow()
        self._expire(now)
        if sent.expires > now:
            freed = tokens < sent.tokens
            self._used += tokens - sent.tokens
            sent.tokens = tokens
            expires = self._expiry(sent.at, tokens)
            if expires != sent.expires:  # only a request larger than a window's share lasts longer
                sent.expires = max(expires, now)
                self._live = deque(sorted(self._live, key=lambda s: s.expires))
            if freed:
                self._pump()
        elif tokens > sent.tokens and self._per_minute is not None:
            self._log(tokens - sent.tokens, now)
            sent.tokens = tokens

    def release(self, sent: Sent) -> None:
        """The server did not count this request (it was refused): its tokens are free again."""
        self.settle(sent, 0.0)

    def refresh(self) -> None:
        """Look at the waiters again: their estimates changed."""
        self._pump()

    def _pump(self) -> None:
        """Admit every waiter that may go now; set the timer for the next moment one might."""
        if any(waiter.admitted.done() for waiter in self._waiters):
            # Cancelled while waiting (its task has not run its clean-up yet): never admit it.
            self._waiters = [waiter for waiter in self._waiters if not waiter.admitted.done()]
        if not self._waiters:
            return
        now = self._clock()
        if self._held_until > now:
            self._wake_at(self._held_until)
            return
        if self._per_minute is None:  # never lifted in practice; admit all unlogged
            for waiter in self._waiters:
                waiter.admitted.set_result(None)
            self._waiters.clear()
            return
        self._expire(now)
        for waiter in self._waiters:
            waiter.tokens = max(1.0, waiter.cost())
        while (chosen := self._first_fit()) is not None:
            for waiter in self._waiters:
                if waiter is chosen:
                    break
                waiter.passed += 1
            self._waiters.remove(chosen)
            chosen.admitted.set_result(self._log(chosen.tokens, now))
        if self._waiters:
            self._wake_at(self._live[0].expires if self._live else now + self.window)

    def _first_fit(self) -> _Waiter | None:
        share = self.share
        for waiter in self._waiters:
            if self._used + waiter.tokens <= share or (self._used < 1 and waiter.tokens > share):
                return waiter
            if waiter.passed >= MAX_BYPASS:
                return None
        return None

    def _wake_at(self, when: float) -> None:
        if self._timer is not None and not self._timer.done():
            if self._timer_at <= when:
                return  # an earlier wake-up is set; it will set the next one
            self._timer.cancel()
        self._timer_at = when
        self._timer = asyncio.ensure_future(self._wake_after(when - self._clock()))

    async def _wake_after(self, delay: float) -> None:
        await self._sleep(max(0.0, delay))
        self._timer = None
        self._pump()

    def _expiry(self, at: float, tokens: float) -> float:
        window, share = self.window, self.share
        span = window * max(1.0, tokens / share) if share else window
        return at + span + self.margin

    def _log(self, tokens: float, now: float) -> Sent:
        sent = Sent(now, tokens, self._expiry(now, tokens))
        self._live.append(sent)
        self._history.append(sent)
        if len(self._live) > 1 and self._live[-2].expires > sent.expires:
            self._live = deque(sorted(self._live, key=lambda s: s.expires))  # rare: after a large request
        self._used += tokens
        return sent

    def _expire(self, now: float) -> None:
        live = self._live
        while live and live[0].expires <= now:
            self._used -= live.popleft().tokens
        history = self._history
        while history and history[0].at <= now - WINDOWS[-1] - self.margin:
            history.popleft()
        if not live:
            self._used = 0.0  # no drift from float sums
