"""--keep-order: records written in input order as they finish. A record that finishes ahead of a slower one
is held until the slower one is written; at most `capacity` are held, and the request pass waits before it
hands out a request that would need more room (so a slow row delays dispatch, not memory)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

Write = Callable[[Any], Awaitable[None]]


class ReorderBuffer:
    """Sequence numbers in (0, 1, 2, … as the request pass handed them out), records out in that order.

    `write` takes a record in its turn; `hold` (optional) is told of each record held back, so that it
    can be kept durably meanwhile; `emptied` (optional) runs whenever nothing is held any more.
    """

    def __init__(
        self,
        capacity: int,
        write: Write,
        hold: Write | None = None,
        emptied: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.capacity = capacity
        self.next = 0  # the sequence number written next
        self.out_of_order = False  # a stopped run wrote held records past a gap
        self._write = write
        self._hold = hold
        self._emptied = emptied
        self._held: dict[int, Any] = {}
        self._room = asyncio.Event()
        self._open = False  # the run is stopping: nothing waits for room any more

    @property
    def held(self) -> int:
        return len(self._held)

    def admits(self, seq: int) -> bool:
        """Whether the request numbered `seq` may be handed out now."""
        return self._open or seq < self.next + self.capacity

    async def wait(self, seq: int) -> None:
        """Until the request numbered `seq` may be handed out (its record would fit the buffer)."""
        while not self.admits(seq):
            self._room.clear()
            await self._room.wait()

    def open(self) -> None:
        """The run stops dispatching: whoever waits for room goes on (to find that out)."""
        self._open = True
        self._room.set()

    async def put(self, seq: int, item: Any) -> None:
        if seq != self.next:
            self._held[seq] = item
            if self._hold is not None:
                await self._hold(item)
            return
        await self._write(item)
        self.next += 1
        held = self._held
        # One task writes at a time: every other put() finds its number past `next` and holds it.
        while self.next in held:
            await self._write(held.pop(self.next))
            self.next += 1
        self._room.set()
        if not held and self._emptied is not None:
            await self._emptied()

    async def drain(self) -> None:
        """The run stopped: the records held are written in order, past the gaps of rows never finished."""
        for seq in sorted(self._held):
            self.out_of_order = True
            await self._write(self._held.pop(seq))
        self._room.set()
