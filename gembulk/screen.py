"""The stage between the request source and the executor: a request that must not be sent fails at once,
with its reason, and no executor (online, batch or the cache in front of them) ever sees it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from gembulk.executors import Emit, RequestSource
from gembulk.records import Outcome, PromptRequest, RowError

# Why a request must not be sent, or None when it may. A pure function of the request: every pass over
# the requests (the batch executor takes several, across processes) must reach the same verdict.
Check = Callable[[PromptRequest], RowError | None]


def screened(requests: RequestSource, check: Check | None, emit: Emit) -> RequestSource:
    """The requests that pass `check` (all of them without one). On the first pass each one that fails
    it is emitted as a failed outcome, written and counted like any other; later passes skip it silently."""
    if check is None:
        return requests
    passes = 0

    def source() -> AsyncIterator[PromptRequest]:
        nonlocal passes
        passes += 1
        return _pass(requests(), check, emit if passes == 1 else None)

    return source


async def _pass(
    requests: AsyncIterator[PromptRequest], check: Check, emit: Emit | None
) -> AsyncIterator[PromptRequest]:
    async with contextlib.aclosing(requests):  # a consumer that stops early closes the source too
        async for request in requests:
            error = check(request)
            if error is None:
                yield request
            elif emit is not None:
                await emit(request, Outcome(text=None, error=error))
