"""A manual clock for timing tests: sleeping advances time instantly and records the request."""

from __future__ import annotations

import asyncio


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)  # still give other tasks a turn, as a real sleep would


class SteppedClock:
    """A manual clock whose sleepers wait until the test advances time past their deadline.

    FakeClock lets every sleeper move time on at once, which suits one task at a time; with several
    tasks waiting side by side, this one shows which of them goes first.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + max(0.0, seconds), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time on, wake the sleepers whose time has come, and let every task run."""
        self.now += seconds
        due = [(t, f) for t, f in self._sleepers if t <= self.now]
        self._sleepers = [(t, f) for t, f in self._sleepers if t > self.now]
        for _, future in due:
            if not future.done():
                future.set_result(None)
        await settle()


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until they all wait again."""
    for _ in range(rounds):
        await asyncio.sleep(0)
