"""A batch run's state in the pipeline: a fresh submission, an adopted one, or one rebuilt for wait|fetch."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from gembulk.batch import state as batch_state
from gembulk.batch.jobs import BatchService
from gembulk.batch.state import BatchState, JobIdentity
from gembulk.client import GeminiClient, GenerationSettings
from gembulk.errors import ExitCode, GembulkError, StateFileError
from gembulk.observer import RunObserver
from gembulk.outputs import count_outcomes, detect_output_format
from gembulk.outputs.compression import output_compression
from gembulk.prepare import Prepared
from gembulk.records import CallFailed
from gembulk.retry import RetryPolicy
from gembulk.scheduler import Limits
from gembulk.settings import BatchMode, CollectOptions, ContextCache, RunOptions, schema_summary
from gembulk.stats import RunResult, RunStats


def job_identity(options: RunOptions, prepared: Prepared) -> JobIdentity:
    """How this run asks its rows, as a state file records it."""
    generation: dict[str, Any] = {
        "temperature": options.generation.temperature,
        "max_output_tokens": options.generation.max_output_tokens,
        "schema": schema_summary(prepared.schema),
    }
    if options.attach:  # only when used, so state files written before --attach existed still match
        generation["attach"] = list(options.attach)
    if prepared.context is not None:  # the content's hash: editing the document makes it another job
        generation["context"] = prepared.context.sha256
    stream = _from_stream(options, prepared)
    return JobIdentity(
        input=f"<stdin>:{prepared.scan.sha256}" if stream else os.path.abspath(options.input),
        template=prepared.template.source,
        model=",".join(options.models),
        system=options.generation.system,
        generation=json.dumps(generation, sort_keys=True),
        id_column=prepared.scan.id_column,
        shard=str(options.shard) if options.shard else None,
    )


def _from_stream(options: RunOptions, prepared: Prepared) -> bool:
    """stdin or a pipe (its spooled copy is kept beside OUT, and its content is what identifies it)."""
    return options.input == "-" or prepared.spool is not None


def new_state(options: RunOptions, prepared: Prepared) -> BatchState:
    assert options.batch is not None
    generation = options.generation
    stdin = _from_stream(options, prepared)
    resumable = prepared.target.resumable
    return BatchState(
        output=os.path.abspath(options.output) if resumable else "-",
        output_format=prepared.output_format,
        identity=job_identity(options, prepared),
        input_path=None if stdin else os.path.abspath(options.input),
        stdin_copy=batch_state.stdin_copy_path(options.output) if stdin and resumable else None,
        input_format=prepared.spec.format,
        delimiter=prepared.spec.delimiter,
        id_column=prepared.scan.id_column,
        input_sha256=prepared.scan.sha256,
        rows=prepared.scan.row_count,
        model=options.model,
        models=options.fanout,
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
            "downloads": options.downloads,
        },
        attach=options.attach,
        attach_root=prepared.attach.root if prepared.attach is not None else None,
        allow_private_urls=options.allow_private_urls,
        max_download=options.download_limit,
        cache_path=os.path.abspath(options.cache_path) if options.cache_path else None,
        fallback_online=options.batch.fallback_online,
        keep_files=options.batch.keep_files,
        context=_context_of(options),
        keep_order=options.keep_order,
        submitted=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    )


def _context_of(options: RunOptions) -> dict[str, Any]:
    if not options.has_context:
        return {}
    return {
        "files": [os.path.abspath(name) for name in options.context_files],
        "text": options.context_text,
        "cache": str(options.context_cache),
    }


def same_submission(state: BatchState, options: RunOptions, prepared: Prepared) -> list[str]:
    """What differs between a state file's submission and this run (empty: the same job and input).
    The input is compared by content: the same bytes at another path are the same input."""
    changed = state.identity.differences(job_identity(options, prepared))
    if state.input_sha256 != prepared.scan.sha256:
        changed.append("input content")
    return changed


def batch_state_for(
    options: RunOptions, prepared: Prepared, observer: RunObserver
) -> tuple[BatchState, str | None]:
    """The state this batch run works on: the state file's (adopted or named) or a fresh one."""
    assert options.batch is not None
    if options.batch.mode in (BatchMode.WAIT, BatchMode.FETCH):
        path = options.batch.state_path
        assert path is not None
        state = batch_state.load(path)
        changed = same_submission(state, options, prepared)
        if changed:
            raise StateFileError(
                f"{path} was written for another job or input (changed since the submission: "
                f"{', '.join(changed)})",
                hint="restore the input the batch was submitted with, or fetch the jobs bare: "
                "gembulk batch fetch batches/ID -o OTHER.jsonl",
            )
        return state, path
    fresh = new_state(options, prepared)
    if not prepared.target.resumable:
        return fresh, None
    path = batch_state.state_path(options.output)
    if not os.path.exists(path):
        return fresh, path
    existing = batch_state.load(path)
    if existing.fetched or not existing.jobs:
        return fresh, path
    names = ", ".join(existing.job_names) or "none created yet"
    changed = same_submission(existing, options, prepared)
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


def options_from_state(
    state: BatchState, state_file: str, output: str | None, how: CollectOptions
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
        delimiter=state.delimiter,
        output_format=state.output_format if os.path.abspath(output) == state.output else None,
        template=state.template,
        id_column=state.id_column,
        model=state.model,
        fanout=tuple(state.models),
        generation=GenerationSettings(
            system=generation.get("system"),
            temperature=generation.get("temperature"),
            max_output_tokens=generation.get("max_output_tokens"),
            json_schema=generation.get("json_schema"),
        ),
        limits=Limits(concurrency=int(online["concurrency"]), rpm=online.get("rpm"), tpm=online.get("tpm")),
        retry=RetryPolicy(max_attempts=int(online["max_attempts"]), max_time=float(online["max_retry_time"])),
        timeout=online.get("timeout"),
        attach=tuple(state.attach),
        attach_root=state.attach_root,
        allow_private_urls=state.allow_private_urls,
        max_download=state.max_download,
        cache_path=state.cache_path,
        context_files=tuple(state.context.get("files") or ()),
        context_text=state.context.get("text"),
        context_cache=ContextCache(state.context.get("cache") or ContextCache.AUTO),
        downloads=int(online.get("downloads") or online["concurrency"]),
        keep_order=state.keep_order,
        api_key=how.api_key,
        base_url=how.base_url,
        progress=how.progress,
        quiet=how.quiet,
        batch=replace(
            how.batch,
            state_path=state_file,
            fallback_online=state.fallback_online if how.fallback_online is None else how.fallback_online,
            keep_files=state.keep_files if how.keep_files is None else how.keep_files,
        ),
    )


async def already_fetched(
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
    fmt = detect_output_format(output, options.output_format)
    ok, failed = await count_outcomes(output, fmt, output_compression(output))
    stats = RunStats(total=state.rows, ok=ok, failed=failed)
    observer.message(f"already fetched into {output}: {ok} ok, {failed} failed")
    assert options.batch is not None
    if not state.files_deleted and not options.batch.keep_files:
        await delete_leftover_files(state, state_file, options.api_key or "", options.base_url, observer)
    code = ExitCode.ROWS_FAILED if failed else ExitCode.OK
    return RunResult(code, stats, 0.0, None, tuple(state.job_names))


async def delete_leftover_files(
    state: BatchState, state_file: str, api_key: str, base_url: str | None, observer: RunObserver
) -> None:
    """Retry deleting the files of a fetched batch (an earlier fetch stopped before it could)."""
    async with GeminiClient(
        api_key=api_key, base_url=base_url, max_connections=4, timeout=60.0, settings=GenerationSettings()
    ) as client:
        service = BatchService(client, RetryPolicy(max_attempts=3))
        files = [job.input_file for job in state.jobs] + list(state.media_files)
        for name in state.job_names:
            try:
                status = await service.status(name)
            except GembulkError:
                continue
            if status.results_file:
                files.append(status.results_file)
        problems = [problem for name in files if (problem := await service.delete_file(name))]
        problems += await delete_context_caches(client, state)
    for problem in problems:
        observer.message(f"could not delete a batch file (it expires after 48 h): {problem}")
    if not problems:
        context = {**state.context, "caches_deleted": True} if state.context.get("caches") else state.context
        batch_state.save(state_file, replace(state, files_deleted=True, context=context))


async def delete_context_caches(client: GeminiClient, state: BatchState) -> list[str]:
    """Delete the context caches a fetched batch's lines named (one already gone is fine)."""
    from gembulk.context.caches import is_cache_gone

    if state.context.get("caches_deleted"):
        return []
    problems = []
    for entry in (state.context.get("caches") or {}).values():
        try:
            await client.delete_cache(str(entry["name"]))
        except CallFailed as failure:
            if not is_cache_gone(failure):
                problems.append(f"context cache {entry['name']}: {failure}")
    return problems
