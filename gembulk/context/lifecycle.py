"""The shared context's part in a run: ready before the first request, its caches gone when the run ends.

Online: the tokens are counted, the choice made and announced per model, the caches found or created and
kept alive; at the end (Ctrl-C included) they are deleted and their storage priced. A batch submission
creates its caches itself (gembulk/executors/batch_submit.py) and leaves them for its jobs: `batch
fetch` deletes them once OUT holds every row.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import replace

from gembulk.client import GeminiClient
from gembulk.context.material import SharedContext
from gembulk.context.runtime import ContextRuntime
from gembulk.modelinfo import PromptSizeCheck
from gembulk.observer import RunObserver
from gembulk.outputs import ExistingOutput
from gembulk.pricing import PriceTable
from gembulk.settings import RunOptions
from gembulk.stats import RunStats


def requests_per_model(options: RunOptions, total: int, existing: ExistingOutput | None) -> dict[str, int]:
    """Requests each model has still to send, as far as can be told before the request pass: its share of
    the rows less its share of the success records a resumed output holds (which of them still answer
    their row as it is now, only that pass knows). An estimate for the caching decision, no more."""
    models = options.models
    per_model = total // max(1, len(models))
    finished = len(existing.succeeded) // max(1, len(models)) if existing is not None else 0
    return dict.fromkeys(models, max(0, per_model - finished))


def sized_for_context(check: PromptSizeCheck | None, context: SharedContext | None) -> PromptSizeCheck | None:
    """The prompt size check with the shared context's tokens in every request (the system instruction
    among them). Its local estimate, not a count: every pass over the requests, in any process (a batch
    is collected by another), must reach the same verdict."""
    if check is None or context is None:
        return check
    return replace(check, system=None, shared_tokens=context.local_tokens())


def new_runtime(
    options: RunOptions,
    context: SharedContext,
    client: GeminiClient,
    prices: PriceTable,
    stats: RunStats,
    observer: RunObserver,
) -> ContextRuntime:
    return ContextRuntime(
        client,
        context,
        client.settings,
        policy=options.retry,
        prices=prices,
        stats=stats,
        report=observer.message,
        batch=options.batch is not None,
        inline_limit=options.inline_limit,
    )


@contextlib.asynccontextmanager
async def context_for(
    options: RunOptions,
    context: SharedContext | None,
    requests: dict[str, int],
    client: GeminiClient,
    prices: PriceTable,
    stats: RunStats,
    observer: RunObserver,
) -> AsyncIterator[ContextRuntime | None]:
    """The run's shared context at work (None without --context); cleaned up however the run ends."""
    if context is None:
        yield None
        return
    runtime = new_runtime(options, context, client, prices, stats, observer)
    runtime.requests, runtime.mode = requests, options.context_cache
    try:
        if options.batch is None and any(requests.values()):
            await runtime.count(list(requests))
            runtime.plan(options.context_cache, requests, rpm=options.limits.rpm)
            await runtime.open()
            runtime.start_keeping()
        # A batch submission opens its caches itself (or adopts those its state file names).
        yield runtime
    finally:
        await runtime.close(delete_batch=not runtime.kept_for_jobs)
