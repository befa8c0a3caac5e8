"""The response cache as an executor decorator: hits are answered locally, misses go to the real executor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from gembulk.attachments import identity
from gembulk.cache import ResponseCache, cache_key
from gembulk.client import GenerationSettings
from gembulk.executors import Emit, Executor, RequestSource
from gembulk.records import Outcome, PromptRequest
from gembulk.stats import RunStats


class CachedExecutor:
    """Wraps any executor (online or batch), so both modes share one cache.

    The first pass over the requests decides hit or miss once per row and remembers the hits, so an
    executor that takes several passes (the batch executor) sees the same misses every time, even if
    another process fills the cache meanwhile. Only successes are stored; errors must reach the API again.
    """

    def __init__(
        self, inner: Executor, cache: ResponseCache, settings: GenerationSettings, stats: RunStats
    ) -> None:
        self._inner = inner
        self._cache = cache
        self._settings = settings
        self._stats = stats
        self._hits: set[tuple[str, str]] | None = None  # (id, model) of rows answered from the cache

    async def _key(self, request: PromptRequest) -> str:
        attachments: list[str] = []
        if request.attachments:  # hashing a local file reads it: off the event loop
            attachments = await asyncio.to_thread(lambda: [identity(a) for a in request.attachments])
        return cache_key(request.model, self._settings.to_request_json(request.prompt), attachments)

    async def run(self, requests: RequestSource, emit: Emit) -> None:
        async def store_and_emit(request: PromptRequest, outcome: Outcome) -> None:
            if outcome.error is None and not outcome.extra.get("cached"):
                self._cache.put(await self._key(request), request.model, outcome)
            await emit(request, outcome)

        await self._inner.run(self._misses(requests, emit), store_and_emit)

    async def submit(self, requests: RequestSource, emit: Emit) -> None:
        """`--batch --detach`: emit the hits now and submit only the misses (the batch executor's
        `submit`); their answers reach the cache when `batch wait|fetch` collects them."""
        submit = getattr(self._inner, "submit")  # noqa: B009 (only the batch executor has it)
        await submit(self._misses(requests, emit))

    def _misses(self, requests: RequestSource, emit: Emit) -> RequestSource:
        def misses() -> AsyncIterator[PromptRequest]:
            return self._pass(requests, emit)

        return misses

    async def _pass(self, requests: RequestSource, emit: Emit) -> AsyncIterator[PromptRequest]:
        first_pass = self._hits is None
        if first_pass:
            self._hits = set()
        async for request in requests():
            pair = (request.id, request.model)
            if first_pass:
                hit = self._cache.get(await self._key(request))
                if hit is not None:
                    self._hits.add(pair)  # type: ignore[union-attr]
                    self._stats.cache_hits += 1
                    await emit(request, replace(hit, extra={**hit.extra, "cached": True}))
                    continue
            elif pair in self._hits:  # type: ignore[operator]
                continue
            yield request

    def stop_dispatching(self) -> None:
        self._inner.stop_dispatching()

    async def output_saved(self) -> None:
        await self._inner.output_saved()
