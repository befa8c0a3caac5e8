"""A run's shared context at work: its parts (large media uploaded), its tokens and the decision per model,
the caches, the settings each request goes out with, and what the caches cost and saved at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gembulk.client import GeminiClient
from gembulk.context.caches import ContextCaches, ModelCache, cached_settings, inline_settings, is_cache_gone
from gembulk.context.decision import CacheDecision, decide, expected_hours, minimum_tokens
from gembulk.context.material import SharedContext
from gembulk.errors import FatalAPIError
from gembulk.pricing import PriceTable
from gembulk.records import CallFailed, SharedPart, Usage
from gembulk.retry import RetryPolicy, call_with_retries
from gembulk.settings import ContextCache, GenerationSettings
from gembulk.stats import RunStats


class ContextRuntime:
    """Per model: the shared context's tokens, whether it is cached, and the settings variant its requests
    carry (the cache's name, or the shared parts first). Requests ask `settings_for(model)` each time: a
    cache recreated mid-run changes it."""

    def __init__(
        self,
        client: GeminiClient,
        context: SharedContext,
        base: GenerationSettings,
        *,
        policy: RetryPolicy,
        prices: PriceTable,
        stats: RunStats,
        report: Callable[[str], None],
        batch: bool,
        inline_limit: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.context = context
        self._client = client
        self._base = base
        self._policy = policy
        self._prices = prices
        self._stats = stats
        self._report = report
        self._batch = batch
        self._inline_limit = 0 if batch else inline_limit  # batch lines reference files, as attachments do
        self.caches = ContextCaches(client, context, policy, report=report, clock=clock)
        self.decisions: dict[str, CacheDecision] = {}
        self.uploads: list[
            str
        ] = []  # "files/…" this run uploaded that no batch state records: deleted at the end
        self.kept_for_jobs = False  # batch jobs reference the caches: they outlive the run
        self._parts: tuple[SharedPart, ...] | None = None
        self._parts_lock = asyncio.Lock()
        self._settings: dict[str, GenerationSettings] = {}
        self._tokens: dict[str, int] = {}
        self._keeping: asyncio.Task[None] | None = None
        self.requests: dict[str, int] = {}  # requests per model still to send (set before the plan)
        self.mode = ContextCache.AUTO

    # -- parts and tokens -----------------------------------------------------------------------------

    async def parts(self) -> tuple[SharedPart, ...]:
        """The shared parts, built once: text and small media inline, larger media uploaded."""
        async with self._parts_lock:
            if self._parts is None:
                self._parts = tuple([await self._part(i) for i in range(len(self.context.items))])
            return self._parts

    async def _part(self, index: int) -> SharedPart:
        item = self.context.items[index]
        if item.is_text or (item.data is not None and item.size <= self._inline_limit // 2):
            return await asyncio.to_thread(item.inline_part)
        assert item.path is not None and item.mime_type is not None
        path, mime, name = item.path, item.mime_type, os.path.basename(item.path)
        try:
            uploaded = await call_with_retries(
                self._policy, lambda: self._client.upload_media(path, mime, name)
            )
        except CallFailed as failure:
            raise FatalAPIError(f"--context {item.source}: upload failed: {failure}") from failure
        self.uploads.append(uploaded.file_name)
        return SharedPart(media=uploaded.part)

    async def count(self, models: Sequence[str]) -> dict[str, int]:
        """countTokens of the shared part on each model (the system instruction counted apart: the API
        cannot count it with an API key), before anything is generated."""
        parts = await self.parts()
        system = self.context.system

        async def one(model: str) -> int:
            tokens = await self._call(lambda: self._client.count_shared_tokens(model, parts))
            if system:
                tokens += await self._call(lambda: self._client.count_tokens(model, system))
            return tokens

        counted = await asyncio.gather(*(one(model) for model in models))
        self._tokens.update(zip(models, counted, strict=True))
        return dict(self._tokens)

    async def _call(self, call: Callable[[], Any]) -> Any:
        try:
            return await call_with_retries(self._policy, call)
        except CallFailed as failure:
            raise FatalAPIError(
                f"countTokens of the shared context failed: {failure.code} {failure.status}: "
                f"{failure.message}"
            ) from failure

    # -- the decision and the caches ------------------------------------------------------------------

    def plan(
        self, mode: ContextCache, requests: Mapping[str, int], rpm: float | None = None
    ) -> list[CacheDecision]:
        """Decide per model from the counted tokens (call `count` first)."""
        factor = self._prices.batch_discount if self._batch else 1.0
        for model, count in requests.items():
            hours = expected_hours(count, batch=self._batch, rpm=rpm)
            price = self._prices.price_for(model)
            tokens = self._tokens[model]
            self.decisions[model] = decide(
                mode, model, tokens, count, price, hours=hours, batch_factor=factor
            )
        return list(self.decisions.values())

    async def open(self, *, batch: bool = False) -> None:
        """Every model's cache found or created now (or inline), each announced once."""
        parts = await self.parts()
        for model, decision in self.decisions.items():
            cache = await self.caches.open(decision, parts, batch=batch) if decision.cache else None
            self._route(model, cache, parts)
            self._report(self.announce(decision, cache))

    async def open_for_batch(self) -> None:
        """A fresh batch submission: the caches its lines name, created now and kept alive until the
        state file names them (`commit_for_jobs`)."""
        if not any(self.requests.values()):
            return  # every row is done: no line will be built
        await self.count(list(self.requests))
        self.plan(self.mode, self.requests)
        await self.open(batch=True)
        self.start_keeping()

    def start_keeping(self) -> None:
        """Keep the online caches alive (their TTL pushed forward) until the run closes them."""
        self._keeping = asyncio.create_task(self.caches.keep_alive())

    async def commit_for_jobs(self) -> dict[str, dict[str, Any]]:
        """The state file is about to name the caches (and the uploads): from now on they outlive the run
        for the jobs, until `batch fetch` deletes them. Returns their entries for the state file."""
        await self._stop_keeping()
        await self.caches.commit_for_batch()
        self.kept_for_jobs = True
        return self.state_entries()

    async def _stop_keeping(self) -> None:
        if self._keeping is not None:
            self._keeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeping
            self._keeping = None

    def adopt(self, entries: Mapping[str, Mapping[str, Any]]) -> None:
        """`batch wait|fetch`, or an adopted submission: the caches its state file names. Requests of the
        online fallback name them too (a cache gone by then is recreated once, as online)."""
        for model, entry in entries.items():
            self.adopt_one(model, entry)
            self._settings[model] = cached_settings(self._base, str(entry["name"]))

    def adopt_one(self, model: str, entry: Mapping[str, Any]) -> ModelCache:
        self._tokens[model] = int(entry.get("tokens") or 0)
        return self.caches.adopt(
            model, str(entry["name"]), self._tokens[model], float(entry.get("since") or 0)
        )

    def state_entries(self) -> dict[str, dict[str, Any]]:
        return {
            model: {"name": cache.name, "tokens": cache.tokens, "since": cache.since}
            for model, cache in self.caches.caches.items()
        }

    def _route(self, model: str, cache: ModelCache | None, parts: tuple[SharedPart, ...]) -> None:
        if cache is None:
            self._settings[model] = inline_settings(self._base, parts)
        else:
            self._settings[model] = cached_settings(self._base, cache.name)
            self._tokens[model] = cache.tokens or self._tokens.get(model, 0)

    def announce(self, decision: CacheDecision, cache: ModelCache | None) -> str:
        """The start line of one model: cached or inline, and why (with the arithmetic, when it applies)."""
        how = f"cached as {cache.name}" if cache is not None else "sent inline, first in every request"
        why = decision.reason
        if decision.costs() and decision.tokens >= minimum_tokens(decision.model):
            why += f"; {decision.costs()}"
        tokens = self._tokens.get(decision.model, decision.tokens)
        what = f"shared context ({self.context.describe()}, {tokens:,} tokens)"
        return f"{what} on {decision.model}: {how} ({why})"

    # -- what requests carry --------------------------------------------------------------------------

    def settings_for(self, model: str) -> GenerationSettings:
        return self._settings[model]  # set by open(), adopt() or ready() before any request

    def shared_tokens(self, model: str) -> int:
        return self._tokens.get(model, self.context.local_tokens())

    def shared_usage(self, model: str) -> Usage:
        """The shared part of one request, as billed: cached tokens when the model's cache is in use."""
        tokens = self.shared_tokens(model)
        cached = tokens if self.settings_for(model).cached_content else 0
        return Usage(prompt_tokens=tokens, cached_tokens=cached)

    async def recover(self, model: str, used: GenerationSettings, failure: CallFailed) -> bool:
        """A request failed: when it named a cache that is gone, recreate it once (or go inline) and say
        the request may be sent again. False: the failure is the request's own."""
        lost = used.cached_content
        if lost is None or not is_cache_gone(failure):
            return False
        async with self.caches.lock(model):
            current = self._settings.get(model)
            if current is not None and current.cached_content != lost:
                return True  # recreated (or inline) by another request meanwhile
            decision = self.decisions.get(model) or CacheDecision(model, True, "adopted", 0, 0, 0.0)
            parts = await self.parts()
            cache = await self.caches.replace_lost(decision, lost, parts)
            self._route(model, cache, parts)
        return True

    # -- the end ---------------------------------------------------------------------------------------

    def take_uploads(self) -> list[str]:
        """The uploads, now recorded in a batch state file (whose fetch deletes them), no longer ours."""
        taken, self.uploads = self.uploads, []
        return taken

    async def close(self, *, delete_batch: bool = False) -> None:
        """Delete the caches (a batch's only with `delete_batch`) and the uploads no batch state records,
        and add the caches' storage to the run's cost."""
        await self._stop_keeping()
        await self.caches.close(delete_batch=delete_batch)
        if self.uploads:
            for name in self.uploads:
                try:
                    await self._client.delete_file(name)
                except CallFailed as failure:
                    self._report(
                        f"could not delete the uploaded context file {name} (it expires after 48 h): "
                        f"{failure}"
                    )
            self.uploads = []
        self._add_storage()

    def _add_storage(self) -> None:
        for model, tokens, hours in self.caches.storage_hours():
            price = self._prices.price_for(model)
            if price is not None:
                cost = price.storage_cost(tokens, hours)
                self._stats.cache_storage_usd += cost
                self._stats.cost_usd += cost
        self.caches.ended.clear()
