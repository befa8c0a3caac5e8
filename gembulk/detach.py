"""`run --batch --detach`: submit the jobs (or find them already submitted), save the state file, return."""

from __future__ import annotations

import asyncio
import time

from gembulk.client import GeminiClient
from gembulk.context.lifecycle import context_for, requests_per_model, sized_for_context
from gembulk.ending import exit_code, first_error, resume_hint
from gembulk.errors import ExitCode, GembulkError
from gembulk.modelinfo import PromptSizeCheck
from gembulk.observer import RunObserver
from gembulk.prepare import Prepared, request_source
from gembulk.screen import screened
from gembulk.settings import RunOptions
from gembulk.signals import StopSignal, wait_or_stop
from gembulk.stats import RunResult, RunStats
from gembulk.wiring import Output, finalize_output, make_executor, media_for, recorder


async def detach(
    options: RunOptions,
    prepared: Prepared,
    observer: RunObserver,
    client: GeminiClient,
    check: PromptSizeCheck | None,
) -> RunResult:
    """Submit (or find already submitted) and return at once; the state file says how to fetch."""
    from gembulk.batch import state as batch_state
    from gembulk.cache import ResponseCache
    from gembulk.executors.batch import BatchExecutor
    from gembulk.executors.cached import CachedExecutor

    stats = RunStats(total=prepared.total)
    done = prepared.existing.done if prepared.existing else frozenset()
    # Rows the cache answers are written to OUT now (opened at the first one); `batch fetch` skips them.
    output = Output(options, prepared, append=prepared.existing is not None)
    started = time.monotonic()
    stop = StopSignal()
    error: GembulkError | None = None
    interrupted = False
    executor: BatchExecutor | None = None
    try:
        async with (
            media_for(options, prepared, client, observer) as media,
            context_for(
                options,
                prepared.context,
                requests_per_model(options, prepared.total, done),
                client,
                prepared.prices,
                stats,
                observer,
            ) as context,
        ):
            made = make_executor(options, prepared, client, stats, observer, media, context)
            assert isinstance(made, BatchExecutor)
            executor = made
            record = recorder(output, prepared, stats, "batch")
            # Prompts clearly too long are written now, failed, and not submitted.
            check = sized_for_context(check, prepared.context)
            source = screened(request_source(prepared, options, done, stats), check, record)
            if options.cache_path is not None:
                context_hash = prepared.context.sha256 if prepared.context is not None else None
                cache = ResponseCache(options.cache_path)
                cached = CachedExecutor(executor, cache, client.settings, stats, context_hash)
                source = cached.misses(source, record)
            task = asyncio.create_task(executor.submit(source))
            with stop.installed():
                interrupted = await wait_or_stop(task, stop, executor, options.grace_period, observer)
            await output.aclose()
            written = stats.cache_hits + stats.failed  # the failed ones: not sent (screened)
            if not interrupted and not executor.state.jobs and written:
                await finalize_output(options, prepared, prepared.existing, written)
    except* GembulkError as group:
        error = first_error(group)
    finally:
        await output.aclose()
    elapsed = time.monotonic() - started
    jobs = tuple(executor.state.job_names) if executor is not None else ()
    code = exit_code(stats, interrupted, error)
    if code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API):
        observer.message(resume_hint(options, stats, executor))
        return RunResult(code, stats, elapsed, error, jobs)
    if stats.failed:
        failures = ", ".join(
            f"{count} {status}" for status, count in sorted(stats.failures_by_status.items())
        )
        observer.message(f"{stats.failed} rows failed unsent ({failures}), written to {options.output}")
    if not jobs and stats.cache_hits:
        observer.message(
            f"nothing to submit: the cache answered the {stats.cache_hits} rows left, in {options.output}"
        )
    elif not jobs and not stats.failed:
        observer.message(f"nothing to submit: every row of {options.output} is already done")
    elif jobs:
        state_file = batch_state.state_path(options.output)
        if stats.cache_hits:
            observer.message(f"{stats.cache_hits} rows answered from the cache, written to {options.output}")
        submitted = stats.total - stats.skipped - stats.cache_hits - stats.failed
        observer.message(
            f"{len(jobs)} batch job(s) for {submitted} rows; state in {state_file}\n"
            f"  status: gembulk batch status {state_file}\n"
            f"  fetch:  gembulk batch fetch {state_file} -o {options.output}  (exit 4 until done)"
        )
    return RunResult(code, stats, elapsed, error, jobs)
