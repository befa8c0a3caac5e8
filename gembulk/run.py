"""`run_job`: one run end to end, reader → prompts → executor → writer, with resume, stop and summary.

The Batch API is the same pipeline with another executor (`--batch`); `--detach` stops after the
submission (gembulk/detach.py), and `batch wait|fetch` rebuilds the run from the state file beside OUT
(gembulk/collect.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time

from gembulk.client import GeminiClient
from gembulk.context.lifecycle import context_for, requests_per_model, sized_for_context
from gembulk.detach import detach
from gembulk.ending import as_batch, exit_code, first_error, resume_hint
from gembulk.errors import ExitCode, GembulkError, OutputWriteError
from gembulk.executors import Executor
from gembulk.modelinfo import PromptSizeCheck, request_checks
from gembulk.observer import NullObserver, RunObserver
from gembulk.outputs import Resume, RunOutput, check_output, output_lock, output_target, remove_leftovers
from gembulk.prepare import Prepared, prepare, request_source
from gembulk.records import Outcome, PromptRequest
from gembulk.settings import BatchMode, RunOptions
from gembulk.signals import StopSignal, wait_or_stop
from gembulk.stats import RunResult, RunStats
from gembulk.wiring import (
    client_for,
    finalize_output,
    make_executor,
    media_for,
    output_for,
    recorder,
    with_cache,
)


async def run_job(options: RunOptions, observer: RunObserver | None = None) -> RunResult:
    """Run one job end to end. Bad input raises GembulkError before anything is sent."""
    observer = observer or NullObserver()
    target = output_target(options.output)
    if options.dry_run or not target.resumable:
        return await _run_job(options, observer)
    check_output(target)  # before the lock file is made beside OUT: one clear line if it cannot be
    with output_lock(options.output):  # one gembulk at a time reads and writes OUT, online or batch
        removed = remove_leftovers(options.output)
        if removed:
            observer.message(
                f"removed {removed} temporary file(s) an interrupted run left beside {options.output}"
            )
        if options.batch is not None and options.batch.mode in (BatchMode.WAIT, BatchMode.FETCH):
            from gembulk.batch import state as batch_state
            from gembulk.batch.flow import already_fetched

            path = options.batch.state_path
            if path is not None:
                state = batch_state.load(path)  # read under the lock: another fetch may just have finished
                if state.fetched:
                    return await already_fetched(state, path, options, observer)
        return await _run_job(options, observer)


async def _run_job(options: RunOptions, observer: RunObserver) -> RunResult:
    prepared = await prepare(options)
    for warning in prepared.warnings:
        observer.message(f"warning: {warning}")
    try:
        if options.dry_run:
            from gembulk.dryrun import dry_run

            await dry_run(options, prepared, observer)
            return RunResult(ExitCode.OK, RunStats(total=prepared.scan.row_count), 0.0)
        async with client_for(options, prepared) as client:
            # One models.get per model: an unknown model (exit 3) or an output bound it cannot answer
            # (exit 2) stops here, before OUT is opened or any row is sent.
            check = await request_checks(
                client, options.models, options.generation.system, options.generation.max_output_tokens
            )
            if options.batch is not None and options.batch.mode is BatchMode.DETACH:
                return await detach(options, prepared, observer, client, check)
            return await _execute(options, prepared, observer, client, check)
    finally:
        if prepared.spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prepared.spool)


def _resume_notice(options: RunOptions, resume: Resume, observer: RunObserver) -> None:
    existing = resume.existing
    if existing is None:
        return
    if existing.torn:
        observer.message(f"{options.output}: a torn last record left by an interrupted run is dropped")
    if existing.held is not None:
        observer.message(
            f"{options.output}: the records an interrupted --keep-order run held back are added to it"
        )
    if existing.records:
        observer.message(
            f"resuming {options.output} ({existing.records} records): rows whose request already has a "
            "success record are not sent again"
        )


async def _save_output(
    options: RunOptions,
    prepared: Prepared,
    resume: Resume,
    output: RunOutput,
    observer: RunObserver,
    interrupted: bool,
) -> None:
    """What the run wrote made durable: as it stands when stopped; when completed, OUT created even
    with no rows, then compacted, sorted or converted as the run asks."""
    if interrupted:
        await output.close()
        return
    await output.finish()
    if prepared.target.resumable:
        await finalize_output(options, prepared, resume, output, observer)


async def _execute(
    options: RunOptions,
    prepared: Prepared,
    observer: RunObserver,
    client: GeminiClient,
    check: PromptSizeCheck | None,
) -> RunResult:
    stats = RunStats(total=prepared.total)
    resume = Resume(prepared.existing)
    _resume_notice(options, resume, observer)
    output = output_for(options, prepared)
    batch = options.batch is not None
    started_display = False
    default_mode = "batch" if batch else None

    def start_display() -> None:
        nonlocal started_display
        if not started_display:
            started_display = True
            observer.start(stats, title=", ".join(options.models))

    record = recorder(output, prepared, stats, default_mode)

    async def emit(request: PromptRequest, outcome: Outcome) -> None:
        start_display()
        await record(request, outcome)

    started = time.monotonic()
    if not batch:  # a batch run shows its jobs' phases first, the row display once rows arrive
        start_display()
    stop = StopSignal()
    error: GembulkError | None = None
    interrupted = False
    executor: Executor | None = None
    try:
        per_model = requests_per_model(options, prepared.total, prepared.existing)
        async with (
            media_for(options, prepared, client, observer) as media,
            context_for(
                options, prepared.context, per_model, client, prepared.prices, stats, observer
            ) as context,
        ):
            order = output.reorder  # --keep-order online: the request pass waits for room in it
            on_stop = order.open if order is not None else None
            executor = make_executor(options, prepared, client, stats, observer, media, context, on_stop)
            runner = with_cache(executor, options, client, stats, prepared)
            # Rows that cannot be sent (a missing value, an empty or clearly too long prompt, the shared
            # context included) fail unsent.
            check = sized_for_context(check, prepared.context)
            source = request_source(prepared, options, resume, stats, unsent=emit, check=check, gate=order)
            task = asyncio.create_task(runner.run(source, emit))
            with stop.installed():
                interrupted = await wait_or_stop(task, stop, runner, options.grace_period, observer)
            await _save_output(options, prepared, resume, output, observer, interrupted)
            if not interrupted:
                await executor.output_saved()  # only once OUT is durable: it may delete what it kept
    except* GembulkError as group:
        error = first_error(group)
    finally:
        await output.discard()
    elapsed = time.monotonic() - started
    code = exit_code(stats, interrupted, error)
    labels = {
        ExitCode.INTERRUPTED: "interrupted",
        ExitCode.FATAL_API: "stopped",
        ExitCode.NOT_READY: "waiting",
        ExitCode.OUTPUT_CLOSED: "stopped: the output was closed",
    }
    # "Not done yet", or a state file refused before anything was sent, needs no summary of zeros.
    if started_display or code not in (ExitCode.NOT_READY, ExitCode.USAGE):
        start_display()
        observer.finish(stats, elapsed=elapsed, outcome=labels.get(code, "done"))
    if code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API) and not isinstance(error, OutputWriteError):
        observer.message(resume_hint(options, stats, executor))
    batch_executor = as_batch(executor)
    jobs = tuple(batch_executor.state.job_names) if batch_executor is not None else ()
    return RunResult(code, stats, elapsed, error, jobs)
