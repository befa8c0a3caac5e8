"""The executor seam: something that turns prompt requests into outcomes, online or through the Batch API."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from gembulk.records import Outcome, PromptRequest

Emit = Callable[[PromptRequest, Outcome], Awaitable[None]]
# A fresh pass over the requests still to do; an executor may take more than one pass (the batch
# executor streams them into upload files first and matches results to them after), so memory stays flat.
RequestSource = Callable[[], AsyncIterator[PromptRequest]]


class Executor(Protocol):
    """Runs every request it is given and emits exactly one outcome per finished request, in any order.

    A request left unfinished (interrupt, fatal error) gets no outcome: it is picked up by the next run.
    """

    async def run(self, requests: RequestSource, emit: Emit) -> None: ...

    def stop_dispatching(self) -> None:
        """Start no new request; let those in flight finish."""

    async def output_saved(self) -> None:
        """Called once every outcome of a finished run is durable in the output (not after an
        interrupt or an error): the batch executor marks its state fetched and deletes its files."""
