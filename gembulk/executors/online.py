"""The online executor: a bounded pool of workers sending each request through scheduler and retry."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import replace

from gembulk.budget import Budget
from gembulk.client import GeminiClient
from gembulk.context.runtime import ContextRuntime
from gembulk.errors import FatalAPIError
from gembulk.executors import Emit, RequestSource
from gembulk.media import AttachmentFailed, MediaResolver
from gembulk.records import CallFailed, Outcome, PromptRequest
from gembulk.retry import RetryEvent, RetryPolicy, Verdict, build_retrying, classify
from gembulk.scheduler import Scheduler
from gembulk.settings import GenerationSettings
from gembulk.stats import RunStats
from gembulk.tokens import TokenEstimate, estimate_tokens

logger = logging.getLogger(__name__)


def fatal_error(failure: CallFailed) -> FatalAPIError:
    """The one-line error and the hint a person needs when the API refuses the whole job."""
    if failure.code == 429:
        hint = (
            "the per-day quota is used up; finished rows are kept, run the same command again when it resets"
        )
    elif failure.reason == "API_KEY_INVALID" or failure.code in (401, 403):
        hint = "check the API key (--api-key, GEMINI_API_KEY or GOOGLE_API_KEY) and its permissions"
    elif failure.code == 404:
        hint = "check the model name (-m); see https://ai.google.dev/gemini-api/docs/models"
    else:
        hint = None
    return FatalAPIError(f"{failure.code} {failure.status}: {failure.message}", hint=hint)


class _Abandoned(Exception):
    """A row given up because the run is stopping; it gets no record and is retried by the next run."""


class OnlineExecutor:
    """One worker per concurrency slot pulls requests from a short queue; the scheduler paces them."""

    def __init__(
        self,
        client: GeminiClient,
        scheduler: Scheduler,
        policy: RetryPolicy,
        stats: RunStats,
        budget: Budget | None = None,
        media: MediaResolver | None = None,
        context: ContextRuntime | None = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self._client = client
        self._on_stop = on_stop  # told when dispatching stops: a request pass waiting for room goes on
        self._context = context  # --context: what each request carries for the shared context
        self._scheduler = scheduler
        self._policy = policy
        self._stats = stats
        self._budget = budget
        self._media = media
        self._stopping = asyncio.Event()
        self._budget_reached = False
        system = client.settings.system
        self._system_tokens = estimate_tokens(system) if system else 0  # sent with every request

    def stop_dispatching(self) -> None:
        self._stopping.set()
        if self._on_stop is not None:
            self._on_stop()

    async def output_saved(self) -> None:
        pass  # nothing kept anywhere but in the output

    async def run(self, requests: RequestSource, emit: Emit) -> None:
        workers = self._scheduler.limits.concurrency
        queue: asyncio.Queue[PromptRequest | None] = asyncio.Queue(maxsize=workers * 2)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._feed(requests(), queue, workers, emit))
            for _ in range(workers):
                group.create_task(self._work(queue, emit))
        if self._budget_reached and self._budget is not None:
            raise self._budget.reached(self._stats.remaining)

    async def _feed(
        self,
        requests: AsyncIterator[PromptRequest],
        queue: asyncio.Queue[PromptRequest | None],
        workers: int,
        emit: Emit,
    ) -> None:
        # The media stage sits between feeder and workers: up to `--downloads` rows have their
        # attachments read, downloaded or uploaded at once, so downloads overlap the model's latency.
        window = asyncio.Semaphore(self._media.window if self._media is not None else 1)
        started = 0
        async with asyncio.TaskGroup() as resolving:
            async for request in requests:
                if self._stopping.is_set():
                    break
                if request.attachments and self._media is not None:
                    await window.acquire()
                    resolving.create_task(self._resolve(request, queue, emit, window))
                    continue
                await queue.put(request)
                if started < workers:
                    # The first wave: let the worker just handed a request send it before the next
                    # worker wakes. Otherwise every worker builds its request (~0.5 ms of SDK CPU each)
                    # before any new connection is ready to write on, the whole wave goes out at once
                    # after the last build, and its answers come back as one burst that queues behind
                    # itself.
                    started += 1
                    await asyncio.sleep(0)
        # One end marker per worker. Not in a `finally`: when the group is cancelled (fatal error),
        # the workers are gone and a put on a full queue would never return.
        for _ in range(workers):
            await queue.put(None)

    async def _resolve(
        self,
        request: PromptRequest,
        queue: asyncio.Queue[PromptRequest | None],
        emit: Emit,
        window: asyncio.Semaphore,
    ) -> None:
        assert self._media is not None
        try:
            if self._stopping.is_set():
                return
            try:
                resolved = await self._media.resolve(request)
            except AttachmentFailed as failed:
                await emit(request, Outcome(text=None, error=failed.error))
                return
            except CallFailed as failure:
                raise fatal_error(failure) from failure
            await queue.put(resolved)
        finally:
            window.release()

    async def _work(self, queue: asyncio.Queue[PromptRequest | None], emit: Emit) -> None:
        while (request := await queue.get()) is not None:
            if self._stopping.is_set():
                continue  # drain without sending, so the feeder's end markers get through
            reservation = None
            if self._budget is not None:
                # Waits while the requests in flight hold the budget; None: it can never fit.
                reservation = await self._budget.reserve(request.model, request.prompt, len(request.media))
                if reservation is None:
                    self._budget_reached = True
                    self.stop_dispatching()  # the rows in flight still finish and are kept
                    continue
                if self._stopping.is_set():  # the run began to stop while this one waited
                    self._budget.settle(reservation, request.model, None)
                    continue
            outcome: Outcome | None = None
            try:
                outcome = await self._process(request)
            except _Abandoned:
                continue
            finally:
                if self._budget is not None and reservation is not None:
                    self._budget.settle(reservation, request.model, outcome.usage if outcome else None)
            await emit(request, outcome)

    async def _process(self, request: PromptRequest) -> Outcome:
        text = estimate_tokens(request.prompt)
        # --context: the shared part (the system instruction in it) counts toward the input quota, cached
        # or not.
        text += (
            self._context.shared_tokens(request.model) if self._context is not None else self._system_tokens
        )
        tokens = TokenEstimate(text, len(request.media))
        try:
            # Most rows succeed at once: their one attempt skips the retry machinery (tens of µs a row).
            return await self._attempt(request, tokens)
        except CallFailed as first:
            if classify(first) is not Verdict.RETRY:
                return self._failed(first, attempts=1)
            return await self._retry(request, tokens, first)

    async def _retry(self, request: PromptRequest, tokens: TokenEstimate, first: CallFailed) -> Outcome:
        replayed = False
        attempts = 1
        try:
            async for attempt in build_retrying(self._policy, on_retry=self._on_retry):
                with attempt:
                    if not replayed:
                        replayed = True
                        raise first  # attempt 1 has happened: the policy decides its wait as for any other
                    if self._stopping.is_set():
                        raise _Abandoned
                    attempts += 1
                    outcome = await self._attempt(request, tokens)
        except CallFailed as failure:
            return self._failed(failure, attempts)
        return replace(outcome, attempts=attempts)

    def _failed(self, failure: CallFailed, attempts: int) -> Outcome:
        if classify(failure) is Verdict.FATAL:
            raise fatal_error(failure) from failure
        return Outcome(text=None, error=failure.to_row_error(), attempts=attempts)

    async def _attempt(self, request: PromptRequest, tokens: TokenEstimate) -> Outcome:
        if self._scheduler.wants_count(request.model):
            await self._count_first(request)
        context = self._context
        if context is None:
            return await self._send(request, tokens, None)
        while True:
            settings = context.settings_for(request.model)
            try:
                return await self._send(request, tokens, settings)
            except CallFailed as failure:
                # The context cache expired or was deleted: recreated once (else inline), and the row is
                # sent again at once, not counted as a failed attempt.
                if not await context.recover(request.model, settings, failure):
                    raise

    async def _send(
        self, request: PromptRequest, tokens: TokenEstimate, settings: GenerationSettings | None
    ) -> Outcome:
        async with self._scheduler.slot(request.model, tokens) as ticket:
            try:
                outcome = await self._client.generate(request.model, request.prompt, request.media, settings)
            except CallFailed as failure:
                self._scheduler.on_failure(ticket, failure)
                raise
            self._scheduler.on_success(ticket, outcome.usage)
            return outcome

    async def _count_first(self, request: PromptRequest) -> None:
        """countTokens for one of a token-paced model's first prompts: the estimate is calibrated before
        the model's first answer (a few per model, never per row)."""
        try:
            counted = await self._client.count_tokens(request.model, request.prompt)
        except CallFailed as failure:
            logger.debug("countTokens for calibration failed: %s", failure)
            return
        self._scheduler.learn_count(request.model, estimate_tokens(request.prompt), counted)

    def _on_retry(self, event: RetryEvent) -> None:
        self._stats.retries += 1
        logger.debug("retrying after %s (attempt %d), waiting %.2fs", event.error, event.attempt, event.wait)
