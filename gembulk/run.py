"""`run_job`: wires reader → prompts → executor → writer for one run, and owns resume, stop and summary.

The Batch API is the same pipeline with another executor (`--batch`); `--detach` stops after the
submission, and `collect_batch` (batch wait|fetch) rebuilds the run from the state file beside OUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from gembulk import jobfile
from gembulk.batch import state as batch_state
from gembulk.batch.jobs import BatchService
from gembulk.batch.state import BatchState
from gembulk.client import GeminiClient, GenerationSettings
from gembulk.errors import ExitCode, GembulkError, InputError, StateFileError, UsageError
from gembulk.executors import Executor, RequestSource
from gembulk.executors.batch import BatchExecutor
from gembulk.executors.online import OnlineExecutor
from gembulk.observer import NullObserver, RunObserver
from gembulk.prompts import Template, prompt_template
from gembulk.readers import InputSpec, ScanResult, detect_format, open_input, scan_input, spool_stdin
from gembulk.records import InputRow, Outcome, PromptRequest, build_record
from gembulk.retry import RetryEvent, RetryPolicy
from gembulk.scheduler import Limits, Scheduler
from gembulk.settings import BatchMode, BatchOptions, ProgressMode, RunOptions, schema_summary
from gembulk.stats import RunStats
from gembulk.writers import (
    ExistingOutput,
    ResultWriter,
    compact,
    detect_output_format,
    load_existing,
    open_writer,
)

logger = logging.getLogger(__name__)

DRY_RUN_SAMPLES = 3


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the CLI to turn into an exit code and for tests to inspect."""

    exit_code: ExitCode
    stats: RunStats
    elapsed: float
    error: GembulkError | None = None
    jobs: tuple[str, ...] = ()  # batch jobs submitted or adopted (--detach prints them on stdout)


@dataclass(frozen=True)
class _Prepared:
    """Everything checked before the first request: nothing is sent until all of this succeeded."""

    spec: InputSpec
    scan: ScanResult
    template: Template
    schema: dict[str, Any] | None
    output_format: str
    existing: ExistingOutput | None
    identity: jobfile.JobIdentity
    spool: str | None  # temporary copy of stdin, deleted at the end


async def run_job(options: RunOptions, observer: RunObserver | None = None) -> RunResult:
    """Run one job end to end. Bad input raises GembulkError before anything is sent."""
    observer = observer or NullObserver()
    if options.batch is None or options.output == "-" or options.dry_run:
        return await _run_job(options, observer)
    _check_output_directory(options.output)
    with batch_state.locked(options.output):  # one gembulk at a time submits or collects for OUT
        path = options.batch.state_path
        if options.batch.mode in (BatchMode.WAIT, BatchMode.FETCH) and path is not None:
            state = batch_state.load(path)  # read under the lock: another fetch may just have finished
            if state.fetched:
                return await _already_fetched(state, path, options, observer)
        return await _run_job(options, observer)


async def _run_job(options: RunOptions, observer: RunObserver) -> RunResult:
    prepared = await _prepare(options)
    try:
        if options.dry_run:
            await _dry_run(options, prepared, observer)
            return RunResult(ExitCode.OK, RunStats(total=prepared.scan.row_count), 0.0)
        if options.batch is not None and options.batch.mode is BatchMode.DETACH:
            return await _detach(options, prepared, observer)
        return await _execute(options, prepared, observer)
    finally:
        if prepared.spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(prepared.spool)


async def _prepare(options: RunOptions) -> _Prepared:
    if not options.dry_run and not options.api_key:
        raise UsageError(
            "no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) or pass --api-key",
        )
    if options.batch is not None and options.batch.mode is BatchMode.DETACH and options.output == "-":
        raise UsageError("--detach needs -o FILE: the batch state file is kept beside it")
    schema = _load_schema(options.json_schema_path)
    if schema is None:
        schema = options.generation.json_schema  # a run rebuilt from a batch state file
    spool = None
    fmt = detect_format(options.input, options.input_format)
    if options.input == "-" and options.stdin_copy is not None:
        if not os.path.isfile(options.stdin_copy):
            raise StateFileError(f"{options.stdin_copy}: the kept copy of the batch's stdin input is gone")
        spec = InputSpec(
            path=options.stdin_copy, format=fmt, id_column=options.id_column, display_name="<stdin>"
        )
    elif options.input == "-":
        # A batch run keeps its stdin beside OUT for `batch wait|fetch`: spool it there to link it.
        beside = os.path.dirname(os.path.abspath(options.output)) if options.output != "-" else None
        spool = await spool_stdin(beside if options.batch is not None else None)
        spec = InputSpec(path=spool, format=fmt, id_column=options.id_column, display_name="<stdin>")
    else:
        if not os.path.isfile(options.input):
            raise InputError(f"{options.input}: no such file")
        spec = InputSpec(path=options.input, format=fmt, id_column=options.id_column)
    try:
        source = await open_input(spec)
        try:
            columns = source.columns
        finally:
            await source.aclose()
        template = prompt_template(
            options.template,
            options.template_file,
            options.prompt_column,
            columns,
            fmt,
            spec.display_name or spec.path,
        )
        scan = await scan_input(spec, template.fields)
        output_format = detect_output_format(options.output, options.output_format)
        identity = jobfile.JobIdentity(
            input=_input_identity(options, scan),
            template=template.source,
            model=options.model,
            system=options.generation.system,
            generation=json.dumps(
                {
                    "temperature": options.generation.temperature,
                    "max_output_tokens": options.generation.max_output_tokens,
                    "schema": schema_summary(schema),
                },
                sort_keys=True,
            ),
            id_column=scan.id_column,
        )
        existing = await _existing_output(options, output_format, identity)
    except BaseException:
        if spool is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spool)
        raise
    return _Prepared(spec, scan, template, schema, output_format, existing, identity, spool)


def _load_schema(path: str | None) -> dict[str, Any] | None:
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            schema = json.load(handle)
    except OSError as exc:
        raise InputError(f"{path}: cannot read JSON schema ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(schema, dict):
        raise InputError(f"{path}: a JSON schema must be a JSON object")
    return schema


def _input_identity(options: RunOptions, scan: ScanResult) -> str:
    if options.input == "-":
        return f"<stdin>:{scan.sha256}"
    return os.path.abspath(options.input)


async def _existing_output(
    options: RunOptions, output_format: str, identity: jobfile.JobIdentity
) -> ExistingOutput | None:
    if options.output == "-":
        return None
    output = options.output
    if options.input != "-" and os.path.exists(output) and os.path.samefile(output, options.input):
        raise UsageError(f"-o {output} is the input file; choose another output path")
    _check_output_directory(output)
    if options.overwrite or not os.path.exists(output):
        return None
    jobfile.check_same_job(output, identity)
    return await load_existing(output, output_format)


def _check_output_directory(output: str) -> None:
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise UsageError(f"-o {output}: directory {directory} does not exist")


async def _dry_run(options: RunOptions, prepared: _Prepared, observer: RunObserver) -> None:
    done = prepared.existing.done_ids if prepared.existing else frozenset()
    source = await open_input(prepared.spec)
    shown = 0
    to_send = 0
    try:
        async for row in source.rows():
            if row.id in done:
                continue
            to_send += 1
            if shown < DRY_RUN_SAMPLES:
                shown += 1
                prompt = prepared.template.render(row.fields)
                observer.message(f"--- row {row.id} ({options.model}) ---\n{prompt}")
    finally:
        await source.aclose()
    observer.message(
        f"dry run: {prepared.scan.row_count} rows in {prepared.spec.display_name or prepared.spec.path}, "
        f"{to_send} to send, {prepared.scan.row_count - to_send} already done; nothing was sent"
    )


class _Output:
    """The result writer, opened at the first record for batch runs: `batch fetch` before the jobs are
    done, or a wait that is interrupted, leaves OUT untouched. Online runs open it at once, as before."""

    def __init__(self, options: RunOptions, prepared: _Prepared, append: bool) -> None:
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


async def _execute(options: RunOptions, prepared: _Prepared, observer: RunObserver) -> RunResult:
    stats = RunStats(total=prepared.scan.row_count)
    existing = prepared.existing
    done_ids = existing.done_ids if existing else frozenset()
    if existing is not None and existing.torn:
        observer.message(f"{options.output}: dropped a torn last record left by an interrupted run")
    if done_ids:
        observer.message(f"resuming {options.output}: {len(done_ids)} rows already done, skipping them")
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
            observer.start(stats, title=options.model)

    async def emit(request: PromptRequest, outcome: Outcome) -> None:
        nonlocal written
        start_display()
        record = build_record(
            request.row,
            request.model,
            outcome,
            with_parsed=prepared.schema is not None,
            mode=outcome.extra.get("mode", default_mode),
        )
        await output.write(record)
        written += 1
        stats.add_usage(outcome.usage)
        if outcome.error is None:
            stats.ok += 1
        else:
            stats.add_failure(outcome.error.status)

    started = time.monotonic()
    if not batch:  # a batch run shows its jobs' phases first, the row display once rows arrive
        start_display()
    stop = _StopSignal()
    error: GembulkError | None = None
    interrupted = False
    executor: Executor | None = None
    try:
        async with _client(options, prepared) as client:
            executor = _make_executor(options, prepared, client, stats, observer)
            task = asyncio.create_task(
                executor.run(_request_source(prepared, options, done_ids, stats), emit)
            )
            with stop.installed():
                interrupted = await _wait_or_stop(task, stop, executor, options.grace_period, observer)
            await output.aclose()  # durable before the executor cleans up anything it kept
            if not interrupted:
                if batch:
                    await output.open()  # a finished run always leaves an output, even with no rows
                    await output.aclose()
                if options.output != "-":
                    await _finalize_output(options, prepared, existing, written)
                await executor.output_saved()
    except* GembulkError as group:
        error = group.exceptions[0]  # type: ignore[assignment]
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
    jobs = tuple(executor.state.job_names) if isinstance(executor, BatchExecutor) else ()
    return RunResult(exit_code, stats, elapsed, error, jobs)


def _client(options: RunOptions, prepared: _Prepared) -> GeminiClient:
    return GeminiClient(
        api_key=options.api_key or "",
        base_url=options.base_url,
        max_connections=options.limits.concurrency,
        timeout=options.timeout,
        settings=_generation_with_schema(options, prepared.schema),
    )


def _make_executor(
    options: RunOptions, prepared: _Prepared, client: GeminiClient, stats: RunStats, observer: RunObserver
) -> Executor:
    """The executor behind the seam: online, or the Batch API with `--batch` (and batch wait|fetch)."""

    def online() -> OnlineExecutor:
        return OnlineExecutor(client, Scheduler(options.limits, stats), options.retry, stats)

    if options.batch is None:
        return online()

    def count_retry(event: RetryEvent) -> None:
        stats.retries += 1

    state, state_file = _batch_state(options, prepared, observer)
    return BatchExecutor(
        service=BatchService(client, options.retry, on_retry=count_retry),
        options=options.batch,
        state=state,
        state_file=state_file,
        settings=client.settings,
        observer=observer,
        online=online,
        stdin_spool=prepared.spool,
    )


def _generation_with_schema(options: RunOptions, schema: dict[str, Any] | None) -> GenerationSettings:
    return replace(options.generation, json_schema=schema) if schema is not None else options.generation


def _request_source(
    prepared: _Prepared, options: RunOptions, done_ids: frozenset[str], stats: RunStats
) -> RequestSource:
    """Fresh passes over the rows still to do; finished rows are counted as skipped on the first pass only."""
    passes = 0

    def source() -> AsyncIterator[PromptRequest]:
        nonlocal passes
        passes += 1
        return _requests(prepared, options, done_ids, stats if passes == 1 else None)

    return source


async def _requests(
    prepared: _Prepared, options: RunOptions, done_ids: frozenset[str], stats: RunStats | None
) -> AsyncIterator[PromptRequest]:
    # _prepare's scan refused repeated ids already: this pass need not hold every id again.
    source = await open_input(prepared.spec, check_unique_ids=False)
    try:
        async for row in source.rows():
            if row.id in done_ids:
                if stats is not None:
                    stats.skipped += 1
                continue
            yield _request(prepared.template, row, options.model)
    finally:
        await source.aclose()


def _request(template: Template, row: InputRow, model: str) -> PromptRequest:
    return PromptRequest(row=row, prompt=template.render(row.fields), model=model)


async def _wait_or_stop(
    task: asyncio.Task[None],
    stop: _StopSignal,
    executor: Executor,
    grace: float,
    observer: RunObserver,
) -> bool:
    """Wait for the executor; on SIGINT/SIGTERM stop dispatching, give in-flight rows `grace` seconds."""
    stop_wait = asyncio.create_task(stop.first.wait())
    try:
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_wait.cancel()
    if task.done():
        task.result()  # re-raise a fatal error
        return False
    observer.message(
        f"interrupted: finishing requests in flight (up to {grace:g}s); press Ctrl-C again to stop now"
    )
    executor.stop_dispatching()
    second = asyncio.create_task(stop.second.wait())
    try:
        await asyncio.wait({task, second}, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
    finally:
        second.cancel()
    if not task.done():
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


class _StopSignal:
    """SIGINT/SIGTERM as two events: the first asks for a graceful stop, the second for an immediate one."""

    def __init__(self) -> None:
        self.first = asyncio.Event()
        self.second = asyncio.Event()

    def _on_signal(self) -> None:
        (self.second if self.first.is_set() else self.first).set()

    @contextlib.contextmanager
    def installed(self) -> Any:
        loop = asyncio.get_running_loop()
        signals = (signal.SIGINT, signal.SIGTERM)
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal)
        try:
            yield self
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)


async def _finalize_output(
    options: RunOptions, prepared: _Prepared, existing: ExistingOutput | None, written: int
) -> None:
    """One record per id: fold a resumed file whose earlier failures were retried, then mark the job done."""
    if existing is not None and (existing.needs_compaction or (existing.failed_ids and written)):
        await compact(options.output, prepared.output_format)
    jobfile.save(options.output, prepared.identity, complete=True)


def _exit_code(stats: RunStats, interrupted: bool, error: GembulkError | None) -> ExitCode:
    if error is not None:
        return error.exit_code
    if interrupted:
        return ExitCode.INTERRUPTED
    return ExitCode.ROWS_FAILED if stats.failed else ExitCode.OK


def _resume_hint(options: RunOptions, stats: RunStats, executor: Executor | None = None) -> str:
    jobs = executor.state.job_names if isinstance(executor, BatchExecutor) else []
    if jobs and isinstance(executor, BatchExecutor) and executor.jobs_ended:
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


def exit_code_for(exc: BaseException) -> ExitCode:
    """Map an exception escaping run_job to an exit code (GembulkError knows its own)."""
    return exc.exit_code if isinstance(exc, GembulkError) else ExitCode.USAGE


# ---------------------------------------------------------------------------------------------------
# The Batch API: the state file of a run, --detach, and batch wait|fetch rebuilt from the state file.


def _new_state(options: RunOptions, prepared: _Prepared) -> BatchState:
    assert options.batch is not None
    generation = options.generation
    stdin = options.input == "-"
    return BatchState(
        output=os.path.abspath(options.output) if options.output != "-" else "-",
        output_format=prepared.output_format,
        identity=prepared.identity,
        input_path=None if stdin else os.path.abspath(options.input),
        stdin_copy=batch_state.stdin_copy_path(options.output) if stdin and options.output != "-" else None,
        input_format=prepared.spec.format,
        id_column=prepared.scan.id_column,
        input_sha256=prepared.scan.sha256,
        rows=prepared.scan.row_count,
        model=options.model,
        template=prepared.template.source,
        generation={
            "system": generation.system,
            "temperature": generation.temperature,
            "max_output_tokens": generation.max_output_tokens,
            "json_schema": prepared.schema,
        },
        online={
            "concurrency": options.limits.concurrency,
            "rpm": options.limits.rpm,
            "tpm": options.limits.tpm,
            "max_attempts": options.retry.max_attempts,
            "max_retry_time": options.retry.max_time,
            "timeout": options.timeout,
        },
        fallback_online=options.batch.fallback_online,
        keep_files=options.batch.keep_files,
        submitted=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def _same_submission(state: BatchState, prepared: _Prepared) -> list[str]:
    """What differs between a state file's submission and this run (empty: the same job and input)."""
    changed = [name for name in state.identity.differences(prepared.identity)]
    if state.input_sha256 != prepared.scan.sha256 and "input" not in changed:
        changed.append("input content")
    return changed


def _batch_state(
    options: RunOptions, prepared: _Prepared, observer: RunObserver
) -> tuple[BatchState, str | None]:
    """The state this batch run works on: the state file's (adopted or named) or a fresh one."""
    assert options.batch is not None
    if options.batch.mode in (BatchMode.WAIT, BatchMode.FETCH):
        path = options.batch.state_path
        assert path is not None
        state = batch_state.load(path)
        changed = _same_submission(state, prepared)
        if changed:
            raise StateFileError(
                f"{path} was written for another job or input (changed since the submission: "
                f"{', '.join(changed)})",
                hint="restore the input the batch was submitted with, or fetch the jobs bare: "
                "gembulk batch fetch batches/ID -o OTHER.jsonl",
            )
        return state, path
    fresh = _new_state(options, prepared)
    if options.output == "-":
        return fresh, None
    path = batch_state.state_path(options.output)
    if not os.path.exists(path):
        return fresh, path
    existing = batch_state.load(path)
    if existing.fetched or not existing.jobs:
        return fresh, path
    names = ", ".join(existing.job_names) or "none created yet"
    changed = _same_submission(existing, prepared)
    if changed and not options.overwrite:
        raise StateFileError(
            f"{path} holds batch jobs of another job that were never fetched ({names}; changed: "
            f"{', '.join(changed)})",
            hint=f"fetch them first (gembulk batch fetch {path}), cancel them (gembulk batch cancel "
            f"{path}), or pass --overwrite to submit anew and leave them",
        )
    if options.overwrite:
        observer.message(f"--overwrite: submitting anew; the earlier batch jobs are left alone ({names})")
        return fresh, path
    observer.message(f"adopting the batch jobs already submitted for {options.output}: {names}")
    return existing, path


async def _detach(options: RunOptions, prepared: _Prepared, observer: RunObserver) -> RunResult:
    """Submit (or find already submitted) and return at once; the state file says how to fetch."""
    stats = RunStats(total=prepared.scan.row_count)
    done_ids = prepared.existing.done_ids if prepared.existing else frozenset()
    started = time.monotonic()
    stop = _StopSignal()
    error: GembulkError | None = None
    interrupted = False
    executor: BatchExecutor | None = None
    try:
        async with _client(options, prepared) as client:
            made = _make_executor(options, prepared, client, stats, observer)
            assert isinstance(made, BatchExecutor)
            executor = made
            source = _request_source(prepared, options, done_ids, stats)
            task = asyncio.create_task(executor.submit(source))
            with stop.installed():
                interrupted = await _wait_or_stop(task, stop, executor, options.grace_period, observer)
    except* GembulkError as group:
        error = group.exceptions[0]  # type: ignore[assignment]
    elapsed = time.monotonic() - started
    jobs = tuple(executor.state.job_names) if executor is not None else ()
    exit_code = _exit_code(stats, interrupted, error)
    if exit_code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API):
        observer.message(_resume_hint(options, stats, executor))
    elif not jobs:
        observer.message(f"nothing to submit: every row of {options.output} is already done")
    else:
        state_file = batch_state.state_path(options.output)
        observer.message(
            f"{len(jobs)} batch job(s) for {stats.total - stats.skipped} rows; state in {state_file}\n"
            f"  status: gembulk batch status {state_file}\n"
            f"  fetch:  gembulk batch fetch {state_file} -o {options.output}  (exit 4 until done)"
        )
    return RunResult(exit_code, stats, elapsed, error, jobs)


def options_from_state(
    state: BatchState,
    state_file: str,
    output: str | None,
    *,
    api_key: str | None,
    base_url: str | None,
    batch: BatchOptions,
    fallback_online: bool | None = None,
    keep_files: bool | None = None,
    progress: ProgressMode = ProgressMode.AUTO,
    quiet: bool = False,
) -> RunOptions:
    """The run a state file describes, collecting into OUT (default: the output it was submitted for)."""
    output = output or state.output
    generation = state.generation
    online = state.online
    return RunOptions(
        input=state.input_path or "-",
        stdin_copy=state.stdin_copy,
        output=output,
        input_format=state.input_format,
        output_format=state.output_format if os.path.abspath(output) == state.output else None,
        template=state.template,
        id_column=state.id_column,
        model=state.model,
        generation=GenerationSettings(
            system=generation.get("system"),
            temperature=generation.get("temperature"),
            max_output_tokens=generation.get("max_output_tokens"),
            json_schema=generation.get("json_schema"),
        ),
        limits=Limits(concurrency=int(online["concurrency"]), rpm=online.get("rpm"), tpm=online.get("tpm")),
        retry=RetryPolicy(max_attempts=int(online["max_attempts"]), max_time=float(online["max_retry_time"])),
        timeout=online.get("timeout"),
        api_key=api_key,
        base_url=base_url,
        progress=progress,
        quiet=quiet,
        batch=replace(
            batch,
            state_path=state_file,
            fallback_online=state.fallback_online if fallback_online is None else fallback_online,
            keep_files=state.keep_files if keep_files is None else keep_files,
        ),
    )


async def collect_batch(
    state_file: str,
    output: str | None,
    *,
    api_key: str | None,
    base_url: str | None,
    batch: BatchOptions,
    fallback_online: bool | None = None,
    keep_files: bool | None = None,
    progress: ProgressMode = ProgressMode.AUTO,
    quiet: bool = False,
    observer: RunObserver | None = None,
) -> RunResult:
    """`batch wait|fetch STATEFILE`: the submitted run, rebuilt from its state file, through `_execute`."""
    observer = observer or NullObserver()
    if not api_key:
        raise UsageError("no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY) or pass --api-key")
    state = batch_state.load(state_file)
    target = output or state.output
    if target == "-":
        raise UsageError("this batch was submitted for stdout; give -o FILE to fetch it")
    options = options_from_state(
        state,
        state_file,
        target,
        api_key=api_key,
        base_url=base_url,
        batch=batch,
        fallback_online=fallback_online,
        keep_files=keep_files,
        progress=progress,
        quiet=quiet,
    )
    return await run_job(options, observer)


async def _already_fetched(
    state: BatchState, state_file: str, options: RunOptions, observer: RunObserver
) -> RunResult:
    """A second fetch: OUT already holds every row, so it is reported as it is (and left as it is)."""
    output = options.output
    if not os.path.exists(output):
        raise StateFileError(
            f"{state_file}: these batch jobs were already fetched into {state.output}, and {output} "
            "does not exist",
            hint="the results were fetched once; run the job again to get them anew",
        )
    existing = await load_existing(output, detect_output_format(output, options.output_format))
    done = existing.done_ids if existing else frozenset()
    failed = existing.failed_ids if existing else frozenset()
    stats = RunStats(total=state.rows, ok=len(done), failed=len(failed))
    observer.message(f"already fetched into {output}: {len(done)} ok, {len(failed)} failed")
    assert options.batch is not None
    if not state.files_deleted and not options.batch.keep_files:
        await _delete_leftover_files(state, state_file, options.api_key or "", options.base_url, observer)
    code = ExitCode.ROWS_FAILED if failed else ExitCode.OK
    return RunResult(code, stats, 0.0, None, tuple(state.job_names))


async def _delete_leftover_files(
    state: BatchState, state_file: str, api_key: str, base_url: str | None, observer: RunObserver
) -> None:
    """Retry deleting the files of a fetched batch (an earlier fetch stopped before it could)."""
    async with GeminiClient(
        api_key=api_key, base_url=base_url, max_connections=4, timeout=60.0, settings=GenerationSettings()
    ) as client:
        service = BatchService(client, RetryPolicy(max_attempts=3))
        files = [job.input_file for job in state.jobs]
        for name in state.job_names:
            try:
                status = await service.status(name)
            except GembulkError:
                continue
            if status.results_file:
                files.append(status.results_file)
        problems = [problem for name in files if (problem := await service.delete_file(name))]
    for problem in problems:
        observer.message(f"could not delete a batch file (it expires after 48 h): {problem}")
    if not problems:
        batch_state.save(state_file, replace(state, files_deleted=True))
