"""`run_job`: wires reader → prompts → executor → writer for one run, and owns resume, stop and summary.

The Batch API is the same pipeline with another executor (`--batch`); `--detach` stops after the
submission, and `collect_batch` (batch wait|fetch) rebuilds the run from the state file beside OUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from gembulk import jobfile
from gembulk.budget import Budget
from gembulk.client import GeminiClient
from gembulk.errors import ExitCode, GembulkError, UsageError
from gembulk.executors import Emit, Executor
from gembulk.executors.online import OnlineExecutor
from gembulk.media import MediaResolver
from gembulk.observer import NullObserver, RunObserver
from gembulk.outputs import ExistingOutput, ResultWriter, compact, open_writer
from gembulk.prepare import Prepared, check_output_directory, prepare, request_source
from gembulk.records import Outcome, PromptRequest, build_record
from gembulk.retry import RetryEvent
from gembulk.scheduler import Scheduler
from gembulk.settings import BatchMode, CollectOptions, GenerationSettings, RunOptions, require_api_key
from gembulk.signals import StopSignal, wait_or_stop
from gembulk.stats import RunResult, RunStats

if TYPE_CHECKING:
    from gembulk.executors.batch import BatchExecutor

# The batch, cache and dry-run modules (and sqlite3) are imported where they are used: an online run
# never needs them, and a command line run pays for every module it imports (about 20 ms for these).

logger = logging.getLogger(__name__)


async def run_job(options: RunOptions, observer: RunObserver | None = None) -> RunResult:
    """Run one job end to end. Bad input raises GembulkError before anything is sent."""
    observer = observer or NullObserver()
    if options.batch is None or options.output == "-" or options.dry_run:
        return await _run_job(options, observer)
    from gembulk.batch import state as batch_state
    from gembulk.batch.flow import already_fetched

    check_output_directory(options.output)
    with batch_state.locked(options.output):  # one gembulk at a time submits or collects for OUT
        path = options.batch.state_path
        if options.batch.mode in (BatchMode.WAIT, BatchMode.FETCH) and path is not None:
            state = batch_state.load(path)  # read under the lock: another fetch may just have finished
            if state.fetched:
                return await already_fetched(state, path, options, observer)
        return await _run_job(options, observer)


async def _run_job(options: RunOptions, observer: RunObserver) -> RunResult:
    prepared = await prepare(options)
    try:
        if options.dry_run:
            from gembulk.dryrun import dry_run

            await dry_run(options, prepared, observer)
            return RunResult(ExitCode.OK, RunStats(total=prepared.scan.row_count), 0.0)
        if options.batch is not None and options.batch.mode is BatchMode.DETACH:
            return await _detach(options, prepared, observer)
        return await _execute(options, prepared, observer)
    finally:
        if prepared.spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prepared.spool)


class _Output:
    """The result writer, opened at the first record for batch runs: `batch fetch` before the jobs are
    done, or a wait that is interrupted, leaves OUT untouched. Online runs open it at once, as before."""

    def __init__(self, options: RunOptions, prepared: Prepared, append: bool) -> None:
        self._options = options
        self._prepared = prepared
        self._append = append
        self._writer: ResultWriter | None = None
        self._opening = asyncio.Lock()  # concurrent first records (online fallback) open it once

    async def open(self) -> None:
        async with self._opening:
            if self._writer is not None:
                return
            if self._options.output != "-":
                jobfile.save(self._options.output, self._prepared.identity, complete=False)
            self._writer = await open_writer(
                self._options.output,
                self._prepared.output_format,
                self._prepared.scan.columns,
                with_parsed=self._prepared.schema is not None,
                append=self._append,
            )

    async def write(self, record: dict[str, Any]) -> None:
        if self._writer is None:
            await self.open()
        assert self._writer is not None
        await self._writer.write(record)

    async def aclose(self) -> None:
        if self._writer is not None:
            await self._writer.aclose()


async def _execute(options: RunOptions, prepared: Prepared, observer: RunObserver) -> RunResult:
    stats = RunStats(total=prepared.total)
    existing = prepared.existing
    done = existing.done if existing else frozenset()
    if existing is not None and existing.torn:
        observer.message(f"{options.output}: dropped a torn last record left by an interrupted run")
    if done:
        observer.message(f"resuming {options.output}: {len(done)} rows already done, skipping them")
    output = _Output(options, prepared, append=existing is not None)
    batch = options.batch is not None
    if not batch:
        await output.open()
    written = 0
    started_display = False
    default_mode = "batch" if batch else None

    def start_display() -> None:
        nonlocal started_display
        if not started_display:
            started_display = True
            observer.start(stats, title=", ".join(options.models))

    record = _recorder(output, prepared, stats, default_mode)

    async def emit(request: PromptRequest, outcome: Outcome) -> None:
        nonlocal written
        start_display()
        await record(request, outcome)
        written += 1

    started = time.monotonic()
    if not batch:  # a batch run shows its jobs' phases first, the row display once rows arrive
        start_display()
    stop = StopSignal()
    error: GembulkError | None = None
    interrupted = False
    executor: Executor | None = None
    try:
        async with _client(options, prepared) as client, _media(options, prepared, client, observer) as media:
            executor = _make_executor(options, prepared, client, stats, observer, media)
            runner = _with_cache(executor, options, client, stats)
            task = asyncio.create_task(runner.run(request_source(prepared, options, done, stats), emit))
            with stop.installed():
                interrupted = await wait_or_stop(task, stop, runner, options.grace_period, observer)
            await output.aclose()  # durable before the executor cleans up anything it kept
            if not interrupted:
                if batch:
                    await output.open()  # a finished run always leaves an output, even with no rows
                    await output.aclose()
                if options.output != "-":
                    await _finalize_output(options, prepared, existing, written)
                await executor.output_saved()
    except* GembulkError as group:
        error = first_error(group)
    finally:
        await output.aclose()
    elapsed = time.monotonic() - started
    exit_code = _exit_code(stats, interrupted, error)
    labels = {
        ExitCode.INTERRUPTED: "interrupted",
        ExitCode.FATAL_API: "stopped",
        ExitCode.NOT_READY: "waiting",
    }
    # "Not done yet", or a state file refused before anything was sent, needs no summary of zeros.
    if started_display or exit_code not in (ExitCode.NOT_READY, ExitCode.USAGE):
        start_display()
        observer.finish(stats, elapsed=elapsed, outcome=labels.get(exit_code, "done"))
    if exit_code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API):
        observer.message(_resume_hint(options, stats, executor))
    batch_executor = _as_batch(executor)
    jobs = tuple(batch_executor.state.job_names) if batch_executor is not None else ()
    return RunResult(exit_code, stats, elapsed, error, jobs)


def _as_batch(executor: Executor | None) -> BatchExecutor | None:
    """The executor if it is the batch one; an online run does not import the batch modules to find out."""
    if executor is None or isinstance(executor, OnlineExecutor):
        return None
    from gembulk.executors.batch import BatchExecutor

    return executor if isinstance(executor, BatchExecutor) else None


def _client(options: RunOptions, prepared: Prepared) -> GeminiClient:
    return GeminiClient(
        api_key=options.api_key or "",
        base_url=options.base_url,
        max_connections=options.limits.concurrency,
        timeout=options.timeout,
        settings=_generation_with_schema(options, prepared.schema),
        paced=options.limits.rpm is not None or options.limits.tpm is not None,
    )


@contextlib.asynccontextmanager
async def _media(
    options: RunOptions, prepared: Prepared, client: GeminiClient, observer: RunObserver
) -> AsyncIterator[MediaResolver | None]:
    """The media stage of a run with --attach. Online runs delete their uploads when they end; a batch
    run's uploads are referenced by its jobs, so the batch executor deletes them after the fetch."""
    if prepared.attach is None:
        yield None
        return
    batch = options.batch is not None
    resolver = MediaResolver(
        client,
        options.retry,
        inline_limit=0 if batch else options.inline_limit,  # batch lines can only reference files
        downloads=options.downloads,
        timeout=options.timeout,
        scratch_dir=os.path.dirname(os.path.abspath(options.output)) if options.output != "-" else None,
    )
    async with resolver:
        try:
            yield resolver
        finally:
            if not batch:
                await resolver.delete_uploads(observer.message)


def _make_executor(
    options: RunOptions,
    prepared: Prepared,
    client: GeminiClient,
    stats: RunStats,
    observer: RunObserver,
    media: MediaResolver | None = None,
) -> Executor:
    """The executor behind the seam: online, or the Batch API with `--batch` (and batch wait|fetch)."""

    def online(budget: Budget | None = None) -> OnlineExecutor:
        scheduler = Scheduler(options.limits, stats)
        return OnlineExecutor(client, scheduler, options.retry, stats, budget, media=media)

    if options.batch is None and options.max_cost is not None:
        budget = Budget(
            options.max_cost,
            prepared.prices,
            system=options.generation.system,
            max_output_tokens=options.generation.max_output_tokens,
        )
        return online(budget)

    if options.batch is None:
        return online()

    from gembulk.batch.flow import batch_state_for
    from gembulk.batch.jobs import BatchService
    from gembulk.executors.batch import BatchExecutor

    def count_retry(event: RetryEvent) -> None:
        stats.retries += 1

    state, state_file = batch_state_for(options, prepared, observer)
    return BatchExecutor(
        service=BatchService(client, options.retry, on_retry=count_retry),
        options=options.batch,
        state=state,
        state_file=state_file,
        settings=client.settings,
        observer=observer,
        online=online,
        stdin_spool=prepared.spool,
        media=media,
    )


def _with_cache(executor: Executor, options: RunOptions, client: GeminiClient, stats: RunStats) -> Executor:
    """With --cache, answers already paid for (by any run, online or batch) are served locally."""
    if options.cache_path is None:
        return executor
    from gembulk.cache import ResponseCache
    from gembulk.executors.cached import CachedExecutor

    return CachedExecutor(executor, ResponseCache(options.cache_path), client.settings, stats)


def _generation_with_schema(options: RunOptions, schema: dict[str, Any] | None) -> GenerationSettings:
    return replace(options.generation, json_schema=schema) if schema is not None else options.generation


async def _finalize_output(
    options: RunOptions, prepared: Prepared, existing: ExistingOutput | None, written: int
) -> None:
    """One record per id: fold a resumed file whose earlier failures were retried, then mark the job done."""
    if existing is not None and (existing.needs_compaction or (existing.failed and written)):
        await compact(options.output, prepared.output_format)
    jobfile.save(options.output, prepared.identity, complete=True)


def _exit_code(stats: RunStats, interrupted: bool, error: GembulkError | None) -> ExitCode:
    if error is not None:
        return error.exit_code
    if interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.ROWS_FAILED if stats.failed else ExitCode.OK


def _resume_hint(options: RunOptions, stats: RunStats, executor: Executor | None = None) -> str:
    batch_executor = _as_batch(executor)
    jobs = batch_executor.state.job_names if batch_executor is not None else []
    if jobs and batch_executor is not None and batch_executor.jobs_ended:
        return (
            "the batch jobs have ended; run the same command again to collect their results into "
            f"{options.output}"
        )
    if jobs:
        listed = ", ".join(jobs)
        if options.output == "-":
            return (
                f"the batch jobs keep running on the service ({listed}); fetch their results later with "
                "`gembulk batch fetch JOB -o FILE`"
            )
        from gembulk.batch import state as batch_state

        state_file = batch_state.state_path(options.output)
        return (
            f"the batch jobs keep running on the service ({listed}); run the same command again to wait "
            f"for them, or later: gembulk batch fetch {state_file} -o {options.output}"
        )
    finished = stats.ok + stats.failed
    if options.output == "-":
        return f"{finished} rows were written to stdout; use -o FILE to make a run resumable"
    return (
        f"{finished} rows were saved to {options.output}; run the same command again to finish "
        f"the remaining {stats.remaining} rows without paying for finished ones"
    )


def first_error(group: BaseExceptionGroup[GembulkError]) -> GembulkError:
    """The first GembulkError of a (possibly nested) task-group failure."""
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    assert isinstance(first, GembulkError)
    return first


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map an exception escaping run_job to an exit code (GembulkError knows its own)."""
    return exc.exit_code if isinstance(exc, GembulkError) else ExitCode.USAGE


async def _detach(options: RunOptions, prepared: Prepared, observer: RunObserver) -> RunResult:
    """Submit (or find already submitted) and return at once; the state file says how to fetch."""
    from gembulk.batch import state as batch_state
    from gembulk.cache import ResponseCache
    from gembulk.executors.batch import BatchExecutor
    from gembulk.executors.cached import CachedExecutor

    stats = RunStats(total=prepared.total)
    done = prepared.existing.done if prepared.existing else frozenset()
    # Rows the cache answers are written to OUT now (opened at the first one); `batch fetch` skips them.
    output = _Output(options, prepared, append=prepared.existing is not None)
    started = time.monotonic()
    stop = StopSignal()
    error: GembulkError | None = None
    interrupted = False
    executor: BatchExecutor | None = None
    try:
        async with _client(options, prepared) as client, _media(options, prepared, client, observer) as media:
            made = _make_executor(options, prepared, client, stats, observer, media)
            assert isinstance(made, BatchExecutor)
            executor = made
            source = request_source(prepared, options, done, stats)
            if options.cache_path is not None:
                cached = CachedExecutor(executor, ResponseCache(options.cache_path), client.settings, stats)
                source = cached.misses(source, _recorder(output, prepared, stats, "batch"))
            task = asyncio.create_task(executor.submit(source))
            with stop.installed():
                interrupted = await wait_or_stop(task, stop, executor, options.grace_period, observer)
            await output.aclose()
            if not interrupted and not executor.state.jobs and stats.cache_hits:
                await _finalize_output(options, prepared, prepared.existing, stats.cache_hits)
    except* GembulkError as group:
        error = first_error(group)
    finally:
        await output.aclose()
    elapsed = time.monotonic() - started
    jobs = tuple(executor.state.job_names) if executor is not None else ()
    exit_code = _exit_code(stats, interrupted, error)
    if exit_code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API):
        observer.message(_resume_hint(options, stats, executor))
    elif not jobs and stats.cache_hits:
        observer.message(
            f"nothing to submit: the cache answered the {stats.cache_hits} rows left, in {options.output}"
        )
    elif not jobs:
        observer.message(f"nothing to submit: every row of {options.output} is already done")
    else:
        state_file = batch_state.state_path(options.output)
        if stats.cache_hits:
            observer.message(f"{stats.cache_hits} rows answered from the cache, written to {options.output}")
        submitted = stats.total - stats.skipped - stats.cache_hits
        observer.message(
            f"{len(jobs)} batch job(s) for {submitted} rows; state in {state_file}\n"
            f"  status: gembulk batch status {state_file}\n"
            f"  fetch:  gembulk batch fetch {state_file} -o {options.output}  (exit 4 until done)"
        )
    return RunResult(exit_code, stats, elapsed, error, jobs)


def _recorder(output: _Output, prepared: Prepared, stats: RunStats, default_mode: str | None) -> Emit:
    """Writes each outcome's record to OUT and counts it: ok or failed, tokens and cost."""

    async def record(request: PromptRequest, outcome: Outcome) -> None:
        mode = outcome.extra.get("mode", default_mode)
        built = build_record(
            request.row, request.model, outcome, with_parsed=prepared.schema is not None, mode=mode
        )
        await output.write(built)
        stats.add_usage(outcome.usage)
        if not outcome.extra.get("cached"):  # an answer from the cache costs nothing
            cost = prepared.prices.cost(request.model, outcome.usage, batch=mode == "batch")
            if cost is None:
                stats.cost_known = False
            else:
                stats.cost_usd += cost
        if outcome.error is None:
            stats.ok += 1
        else:
            stats.add_failure(outcome.error.status)

    return record


async def collect(target: str, output: str | None, how: CollectOptions, observer: RunObserver) -> RunResult:
    """`batch wait|fetch TARGET`: a state file (the whole run rebuilt), or a bare job name."""
    from gembulk.batch import state as batch_state
    from gembulk.batch.commands import Connection, fetch_bare
    from gembulk.batch.jobs import PollSettings

    state_file, job = batch_state.resolve_target(target, output)
    if state_file is not None:
        return await collect_batch(state_file, output, how, observer)
    assert job is not None
    if output is None or output == "-":
        raise UsageError(f"give -o FILE: {job} has no state file to say where its results go")
    batch = how.batch
    code, stats = await fetch_bare(
        job,
        output,
        Connection(api_key=require_api_key(how.api_key), base_url=how.base_url),
        observer,
        wait=batch.mode is BatchMode.WAIT,
        poll_settings=PollSettings(batch.poll_interval, batch.poll_max_interval, batch.wait_timeout),
        keep_files=bool(how.keep_files),
    )
    if not how.quiet:
        observer.message(f"done: {stats.ok} ok, {stats.failed} failed (records carry id = key only)")
    return RunResult(code, stats, 0.0)


async def collect_batch(
    state_file: str, output: str | None, how: CollectOptions, observer: RunObserver | None = None
) -> RunResult:
    """`batch wait|fetch STATEFILE`: the submitted run, rebuilt from its state file, through `_execute`."""
    from gembulk.batch import state as batch_state
    from gembulk.batch.flow import options_from_state

    require_api_key(how.api_key)
    state = batch_state.load(state_file)
    target = output or state.output
    if target == "-":
        raise UsageError("this batch was submitted for stdout; give -o FILE to fetch it")
    return await run_job(options_from_state(state, state_file, target, how), observer)
