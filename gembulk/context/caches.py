"""The cachedContents entries of a run's shared context, one per model: found or created, kept alive while
the run lasts, recreated once when one disappears, deleted when the run ends (a batch's after its fetch).

A run finds a cache a killed run left for the same content and model by its display name (`gembulk
<content hash> <model>`) and reuses it, refreshing its TTL: the service is the state, which also works
for `-o -`. A batch's caches are named `gembulk-batch …` and are never reused by another run: their
names are in the batch state file, they live as long as the jobs may run, and `batch fetch` deletes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from gembulk.client import CacheEntry, GeminiClient
from gembulk.context.decision import BATCH_TTL_HOURS, CacheDecision
from gembulk.context.material import SharedContext
from gembulk.errors import FatalAPIError
from gembulk.records import CallFailed, SharedPart
from gembulk.retry import RetryPolicy, Verdict, call_with_retries, classify
from gembulk.settings import GenerationSettings

logger = logging.getLogger(__name__)

# Online, a cache's TTL is short and pushed forward while the run lasts: one left by a killed run expires
# within ONLINE_TTL, and its storage stops being billed.
ONLINE_TTL = 900.0
REFRESH_EVERY = 300.0
BATCH_TTL = BATCH_TTL_HOURS * 3600


def display_name(context: SharedContext, model: str, *, batch: bool) -> str:
    """What names a run's cache: the content's hash and the model (a batch's are its own)."""
    kind = "gembulk-batch" if batch else "gembulk"
    return f"{kind} {context.sha256[:16]} {model.removeprefix('models/')}"


def is_cache_gone(failure: CallFailed) -> bool:
    """A request refused because the cachedContents entry it names has expired or was deleted: the API
    answers 403 "CachedContent not found (or permission denied)" (404 on some paths)."""
    return failure.code in (403, 404) and "cachedcontent" in failure.message.replace(" ", "").lower()


@dataclass
class ModelCache:
    """One model's cache as this run holds it."""

    model: str
    name: str
    tokens: int
    since: float  # wall-clock time it became this run's (created or found)
    expires: float | None
    kept_for_batch: bool = False  # batch jobs reference it: it outlives the run, `batch fetch` deletes it


class ContextCaches:
    """The caches of one run, by model: created or found, kept alive, replaced once, deleted, and how long
    each was stored."""

    def __init__(
        self,
        client: GeminiClient,
        context: SharedContext,
        policy: RetryPolicy,
        *,
        report: Callable[[str], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._context = context
        self._policy = policy
        self._report = report
        self._clock = clock
        self.caches: dict[str, ModelCache] = {}
        self.ended: list[tuple[ModelCache, float]] = []  # (cache, when it stopped being stored)
        self._recreated: set[str] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, model: str) -> asyncio.Lock:
        return self._locks.setdefault(model, asyncio.Lock())

    async def open(
        self, decision: CacheDecision, shared: tuple[SharedPart, ...], *, batch: bool
    ) -> ModelCache | None:
        """The model's cache: a live one left for this content (online), else a new one. None when the
        API cannot cache it (model, size): the context then goes inline, with one warning."""
        model = decision.model
        name = display_name(self._context, model, batch=batch)
        if not batch:
            found = await self._find(name, model)
            if found is not None:
                return found
        # A batch's cache starts with the online TTL too (kept alive while the jobs are built and uploaded)
        # and gets the job's TTL once the state file names it: a submission killed before that leaves a
        # cache that expires soon.
        ttl = ONLINE_TTL
        try:
            entry = await call_with_retries(
                self._policy,
                lambda: self._client.create_cache(
                    model, system=self._context.system, shared=shared, ttl_seconds=ttl, display_name=name
                ),
            )
        except CallFailed as failure:
            return self._not_cached(model, failure)
        cache = ModelCache(model, entry.name, entry.tokens or decision.tokens, self._clock(), entry.expires)
        self.caches[model] = cache
        return cache

    async def _find(self, name: str, model: str) -> ModelCache | None:
        try:
            entries = await call_with_retries(self._policy, self._client.list_caches)
        except CallFailed as failure:
            logger.debug("listing cachedContents failed: %s", failure)
            return None
        now = self._clock()
        for entry in entries:
            if entry.display_name == name and entry.model == model and (entry.expires or now + 1) > now:
                refreshed = await self._refresh(entry.name)
                if refreshed is None:
                    continue  # gone in between
                self._report(f"{model}: reusing {entry.name}, left for the same context by an earlier run")
                cache = ModelCache(model, entry.name, entry.tokens or 0, now, refreshed.expires)
                self.caches[model] = cache
                return cache
        return None

    def _not_cached(self, model: str, failure: CallFailed) -> None:
        if classify(failure) is Verdict.FATAL and failure.code in (401, 403):
            raise FatalAPIError(
                f"creating the context cache failed: {failure.code} {failure.status}: {failure.message}"
            )
        self._report(
            f"warning: {model} did not cache the shared context ({failure.code} {failure.status}: "
            f"{failure.message}); sending it inline, first in every request"
        )
        return None

    async def _refresh(self, name: str) -> CacheEntry | None:
        try:
            return await call_with_retries(self._policy, lambda: self._client.set_cache_ttl(name, ONLINE_TTL))
        except CallFailed as failure:
            logger.debug("refreshing %s failed: %s", name, failure)
            return None

    async def keep_alive(self) -> None:
        """Push every online cache's expiry forward until cancelled (the run's end)."""
        while True:
            await asyncio.sleep(REFRESH_EVERY)
            for cache in list(self.caches.values()):
                if not cache.kept_for_batch and (entry := await self._refresh(cache.name)) is not None:
                    cache.expires = entry.expires

    async def replace_lost(
        self, decision: CacheDecision, lost: str, shared: tuple[SharedPart, ...]
    ) -> ModelCache | None:
        """The cache `lost` expired or was deleted mid-run: recreate it, once per model. None: it was lost
        a second time (or cannot be recreated), and the model goes inline."""
        model = decision.model
        current = self.caches.get(model)
        if current is not None and current.name != lost:
            return current  # another request recreated it already
        if current is not None:
            self._ended(self.caches.pop(model), self._clock())
        if model in self._recreated:
            self._report(
                f"warning: {model}'s context cache {lost} disappeared again; sending the context inline"
            )
            return None
        self._recreated.add(model)
        self._report(
            f"{model}: the context cache {lost} disappeared (expired or deleted); recreating it once"
        )
        return await self.open(decision, shared, batch=False)

    def adopt(self, model: str, name: str, tokens: int, since: float) -> ModelCache:
        """A batch's cache, named in its state file."""
        cache = ModelCache(model, name, tokens, since, since + BATCH_TTL, kept_for_batch=True)
        self.caches[model] = cache
        return cache

    async def commit_for_batch(self) -> None:
        """The caches are now named in a batch state file with jobs: their TTL becomes the job's."""
        for cache in self.caches.values():
            entry = await call_with_retries(
                self._policy, lambda n=cache.name: self._client.set_cache_ttl(n, BATCH_TTL)
            )
            cache.expires, cache.kept_for_batch = entry.expires, True

    async def close(self, *, delete_batch: bool) -> None:
        """Delete the run's caches; a batch's stay for its jobs unless `delete_batch` (after the fetch)."""
        for model, cache in list(self.caches.items()):
            if cache.kept_for_batch and not delete_batch:
                continue
            del self.caches[model]
            try:
                await call_with_retries(self._policy, lambda name=cache.name: self._client.delete_cache(name))
            except CallFailed as failure:
                if not is_cache_gone(failure):
                    self._report(
                        f"could not delete the context cache {cache.name} (it expires by its TTL): {failure}"
                    )
                    self._ended(cache, cache.expires or self._clock())
                    continue
            self._ended(cache, self._clock())

    def _ended(self, cache: ModelCache, when: float) -> None:
        self.ended.append((cache, when))

    def storage_hours(self) -> list[tuple[str, int, float]]:
        """(model, tokens, hours stored) of every cache this run ended (deleted, or left to expire). A
        batch's live caches are not in it: the run that deletes them after the fetch counts them."""
        return [(c.model, c.tokens, max(0.0, when - c.since) / 3600) for c, when in self.ended]


def cached_settings(base: GenerationSettings, name: str) -> GenerationSettings:
    """The requests of a cached model: the cache named, no system instruction and no shared parts."""
    return replace(base, cached_content=name, shared=())


def inline_settings(base: GenerationSettings, shared: tuple[SharedPart, ...]) -> GenerationSettings:
    """The requests of an inline model: the shared parts first in every request."""
    return replace(base, cached_content=None, shared=shared)
