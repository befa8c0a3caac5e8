"""`run_job`: wires reader → prompts → executor → writer for one run, and owns resume, stop and summary."""

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
from typing import Any

from gembulk import jobfile
from gembulk.client import GeminiClient, GenerationSettings
from gembulk.errors import ExitCode, FatalAPIError, GembulkError, InputError, UsageError
from gembulk.executors import Executor
from gembulk.executors.online import OnlineExecutor
from gembulk.observer import NullObserver, RunObserver
from gembulk.prompts import Template, prompt_template
from gembulk.readers import InputSpec, ScanResult, detect_format, open_input, scan_input, spool_stdin
from gembulk.records import InputRow, Outcome, PromptRequest, build_record
from gembulk.scheduler import Scheduler
from gembulk.settings import RunOptions, schema_summary
from gembulk.stats import RunStats
from gembulk.writers import ExistingOutput, compact, detect_output_format, load_existing, open_writer

logger = logging.getLogger(__name__)

DRY_RUN_SAMPLES = 3


@dataclass(frozen=True)
class RunResult:
    """How a run ended, for the CLI to turn into an exit code and for tests to inspect."""

    exit_code: ExitCode
    stats: RunStats
    elapsed: float
    error: GembulkError | None = None


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
    prepared = await _prepare(options)
    try:
        if options.dry_run:
            await _dry_run(options, prepared, observer)
            return RunResult(ExitCode.OK, RunStats(total=prepared.scan.row_count), 0.0)
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
    schema = _load_schema(options.json_schema_path)
    spool = None
    fmt = detect_format(options.input, options.input_format)
    if options.input == "-":
        spool = await spool_stdin()
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
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise UsageError(f"-o {output}: directory {directory} does not exist")
    if options.overwrite or not os.path.exists(output):
        return None
    jobfile.check_same_job(output, identity)
    return await load_existing(output, output_format)


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


async def _execute(options: RunOptions, prepared: _Prepared, observer: RunObserver) -> RunResult:
    stats = RunStats(total=prepared.scan.row_count)
    existing = prepared.existing
    done_ids = existing.done_ids if existing else frozenset()
    if existing is not None and existing.torn:
        observer.message(f"{options.output}: dropped a torn last record left by an interrupted run")
    if done_ids:
        observer.message(f"resuming {options.output}: {len(done_ids)} rows already done, skipping them")
    append = existing is not None
    if options.output != "-":
        jobfile.save(options.output, prepared.identity, complete=False)
    writer = await open_writer(
        options.output,
        prepared.output_format,
        prepared.scan.columns,
        with_parsed=prepared.schema is not None,
        append=append,
    )
    written = 0

    async def emit(request: PromptRequest, outcome: Outcome) -> None:
        nonlocal written
        record = build_record(request.row, request.model, outcome, with_parsed=prepared.schema is not None)
        await writer.write(record)
        written += 1
        stats.add_usage(outcome.usage)
        if outcome.error is None:
            stats.ok += 1
        else:
            stats.add_failure(outcome.error.status)

    started = time.monotonic()
    observer.start(stats, title=options.model)
    stop = _StopSignal()
    error: GembulkError | None = None
    interrupted = False
    try:
        async with GeminiClient(
            api_key=options.api_key or "",
            base_url=options.base_url,
            max_connections=options.limits.concurrency,
            timeout=options.timeout,
            settings=_generation_with_schema(options, prepared.schema),
        ) as client:
            executor = _make_executor(options, client, stats)
            task = asyncio.create_task(
                executor.run(lambda: _requests(prepared, options, done_ids, stats), emit)
            )
            with stop.installed():
                interrupted = await _wait_or_stop(task, stop, executor, options.grace_period, observer)
    except* FatalAPIError as group:
        error = group.exceptions[0]  # type: ignore[assignment]
    finally:
        await writer.aclose()
    elapsed = time.monotonic() - started
    if options.output != "-" and not interrupted and error is None:
        await _finalize_output(options, prepared, existing, written)
    exit_code = _exit_code(stats, interrupted, error)
    outcome = {ExitCode.INTERRUPTED: "interrupted", ExitCode.FATAL_API: "stopped"}.get(exit_code, "done")
    observer.finish(stats, elapsed=elapsed, outcome=outcome)
    if exit_code in (ExitCode.INTERRUPTED, ExitCode.FATAL_API):
        observer.message(_resume_hint(options, stats))
    return RunResult(exit_code, stats, elapsed, error)


def _make_executor(options: RunOptions, client: GeminiClient, stats: RunStats) -> Executor:
    """The executor behind the seam: online now; the Batch API executor plugs in here."""
    return OnlineExecutor(client, Scheduler(options.limits, stats), options.retry, stats)


def _generation_with_schema(options: RunOptions, schema: dict[str, Any] | None) -> GenerationSettings:
    return replace(options.generation, json_schema=schema) if schema is not None else options.generation


async def _requests(
    prepared: _Prepared, options: RunOptions, done_ids: frozenset[str], stats: RunStats
) -> AsyncIterator[PromptRequest]:
    source = await open_input(prepared.spec)
    try:
        async for row in source.rows():
            if row.id in done_ids:
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


def _resume_hint(options: RunOptions, stats: RunStats) -> str:
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
