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
from gembulk.outputs import Resume
from gembulk.prepare import Prepared, request_source
from gembulk.settings import RunOptions
from gembulk.signals import StopSignal, wait_or_stop
from gembulk.stats import RunResult, RunStats
from gembulk.wiring import finalize_output, make_executor, media_for, output_for, recorder


async def detach(
    options: RunOptions,
    prepared: Prepared,
    observer: RunObserver,
    client: GeminiClient,
    check: PromptSizeCheck | None,
) -> RunResult:
    """Submit (or find already submitted) and return at once; the state file says how to fetch."""
    from gembulk.cache import ResponseCache
    from gembulk.executors.batch import BatchExecutor
    from gembulk.executors.cached import CachedExecutor

    stats = RunStats(total=prepared.total)
    resume = Resume(prepared.existing)
    # Rows the cache answers, and rows that cannot be sent, are written to OUT now (opened at the first
    # one); `batch fetch` skips the former and writes the latter again (compaction keeps one).
    output = output_for(options, prepared)
    record = recorder(output, prepared, stats, "batch")
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
                requests_per_model(options, prepared.total, prepared.existing),
                client,
                prepared.prices,
                stats,
                observer,
            ) as context,
        ):
            made = make_executor(options, prepared, client, stats, observer, media, context)
            assert isinstance(made, BatchExecutor)
            executor = made
            # Rows that cannot be sent (a missing value, an empty or clearly too long prompt) are
            # written now, failed, and not submitted.
            check = sized_for_context(check, prepared.context)
            source = request_source(prepared, options, resume, stats, unsent=record, check=check)
            if options.cache_path is not None:
                context_hash = prepared.context.sha256 if prepared.context is not None else None
                cache = ResponseCache(options.cache_path)
                cached = CachedExecutor(executor, cache, client.settings, stats, context_hash)
                source = cached.misses(source, record)
            task = asyncio.create_task(executor.submit(source))
            with stop.installed():
                interrupted = await wait_or_stop(task, stop, executor, options.grace_period, observer)
            if interrupted or executor.state.jobs:
                await output.close()  # the jobs' rows are written by `batch wait|fetch`
            elif output.written:  # the job is complete without a batch: what a fetch would do
                await output.finish()
                await finalize_output(options, prepared, resume, output, observer)
    except* GembulkError as group:
        error = first_error(group)
    finally:
        await output.discard()
    elapsed = time.monotonic() - started
    jobs = tuple(executor.state.job_names) if executor is not None else ()
    code = exit_code(stats, interrupted, error)
    if code is ExitCode.ROWS_FAILED and jobs:
        code = ExitCode.OK  # submitted: the fetch reports the rows that failed, with the jobs' own
    if code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API):
        observer.message(resume_hint(options, stats, executor))
        return RunResult(code, stats, elapsed, error, jobs)
    _tell(options, stats, jobs, observer)
    return RunResult(code, stats, elapsed, error, jobs)


def _tell(options: RunOptions, stats: RunStats, jobs: tuple[str, ...], observer: RunObserver) -> None:
    """What the submission did: the rows written now, and how to follow the jobs."""
    from gembulk.batch import state as batch_state

    if stats.failed:
        failures = ", ".join(
            f"{count} {status}" for status, count in sorted(stats.failures_by_status.items())
        )
        observer.message(f"{stats.failed} rows failed unsent ({failures}), written to {options.output}")
    if not jobs and stats.cache_hits:
        observer.message(
            f"nothing to submit: the cache answered the {stats.cache_hits} rows left, in {options.output}"
        )
    elif not jobs and stats.failed:
        observer.message(f"nothing to submit: the {stats.failed} rows left cannot be sent ({options.output})")
    elif not jobs:
        observer.message(f"nothing to submit: every row of {options.output} is already done")
    else:
        state_file = batch_state.state_path(options.output)
        if stats.cache_hits:
            observer.message(f"{stats.cache_hits} rows answered from the cache, written to {options.output}")
        submitted = stats.total - stats.skipped - stats.cache_hits - stats.failed
        observer.message(
            f"{len(jobs)} batch job(s) for {submitted} rows; state in {state_file}\n"
            f"  status: gembulk batch status {state_file}\n"
            f"  fetch:  gembulk batch fetch {state_file} -o {options.output}  (exit 4 until done)"
        )
