"""The response cache as an executor decorator: hits are answered locally, misses go to the real executor."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

from gembulk.attachments import identity
from gembulk.cache import ResponseCache, cache_key
from gembulk.client import GenerationSettings, request_json
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
        self,
        inner: Executor,
        cache: ResponseCache,
        settings: GenerationSettings,
        stats: RunStats,
        context: str | None = None,
    ) -> None:
        self._inner = inner
        self._context = context  # the shared context's content hash (--context), part of every key
        self._cache = cache
        self._settings = settings
        self._stats = stats
        self._hits: set[tuple[str, str]] | None = None  # (id, model) of rows answered from the cache

    async def _key(self, request: PromptRequest) -> str:
        if request.request_key is not None:  # computed by the request pass, from the same settings
            return request.request_key
        attachments: list[str] = []
        if request.attachments:  # hashing a local file reads it: off the event loop
            attachments = await asyncio.to_thread(lambda: [identity(a) for a in request.attachments])
        body = request_json(self._settings, request.prompt)
        return cache_key(request.model, body, attachments, context=self._context)

    async def run(self, requests: RequestSource, emit: Emit) -> None:
        async def store_and_emit(request: PromptRequest, outcome: Outcome) -> None:
            if outcome.error is None and not outcome.extra.get("cached"):
                self._cache.put(await self._key(request), request.model, outcome)
            await emit(request, outcome)

        await self._inner.run(self.misses(requests, emit), store_and_emit)

    def misses(self, requests: RequestSource, emit: Emit) -> RequestSource:
        """The requests the cache cannot answer; the hits are emitted on the first pass.

        `run` hands these to the executor it wraps; `--batch --detach` submits them directly (their
        answers reach the cache when `batch wait|fetch` collects them through `run`).
        """

        def misses() -> AsyncIterator[PromptRequest]:
            return self._pass(requests, emit)

        return misses

    async def _pass(self, requests: RequestSource, emit: Emit) -> AsyncIterator[PromptRequest]:
        first_pass = self._hits is None
        hits = self._hits = set() if self._hits is None else self._hits
        async for request in requests():
            pair = (request.id, request.model)
            if first_pass:
                hit = self._cache.get(await self._key(request))
                if hit is not None:
                    hits.add(pair)
                    self._stats.cache_hits += 1
                    await emit(request, replace(hit, extra={**hit.extra, "cached": True}))
                    continue
            elif pair in hits:
                continue
            yield request

    def stop_dispatching(self) -> None:
        self._inner.stop_dispatching()

    async def output_saved(self) -> None:
        await self._inner.output_saved()
