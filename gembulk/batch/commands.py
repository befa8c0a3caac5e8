"""`gembulk batch status|cancel|list`, and wait/fetch of a bare job name that has no state file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import IO, Any

from gembulk.batch import state as batch_state
from gembulk.batch.jobs import BatchService, JobStatus, PollSettings, format_duration, poll
from gembulk.batch.results import DUPLICATE, from_line, index_results, not_answered, read_line
from gembulk.client import GeminiClient, GenerationSettings
from gembulk.errors import ExitCode, UsageError
from gembulk.filemodes import new_output_file
from gembulk.observer import RunObserver
from gembulk.outputs import detect_output_format, open_writer, output_lock, remove_leftovers
from gembulk.outputs.compression import check_available, output_compression
from gembulk.outputs.target import TEMP_SUFFIX, temp_prefix
from gembulk.records import InputRow, Outcome, build_record
from gembulk.retry import RetryPolicy
from gembulk.stats import RunStats


@dataclass(frozen=True)
class Connection:
    """How the batch commands reach the API."""

    api_key: str
    base_url: str | None
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=4, max_time=120.0))
    timeout: float = 60.0


@contextlib.asynccontextmanager
async def _service(connection: Connection) -> AsyncIterator[BatchService]:
    async with GeminiClient(
        api_key=connection.api_key,
        base_url=connection.base_url,
        max_connections=8,
        timeout=connection.timeout,
        settings=GenerationSettings(),
    ) as client:
        yield BatchService(client, connection.retry)


async def _statuses(service: BatchService, names: list[str]) -> list[JobStatus]:
    return list(await asyncio.gather(*(service.status(name) for name in names)))


# -- status ------------------------------------------------------------------------------------------


async def status(target: str, output: str | None, connection: Connection, *, as_json: bool) -> str:
    """The state of a job, or of every job of a state file, as text or JSON (returned, for stdout)."""
    state_file, job = batch_state.resolve_target(target, output)
    state = batch_state.load(state_file) if state_file else None
    names = state.job_names if state is not None and job is None else [job] if job else []
    async with _service(connection) as service:
        statuses = await _statuses(service, names)
    rows = {ref.name: ref.rows for ref in state.jobs} if state is not None else {}
    done = all(s.done for s in statuses)
    if as_json:
        body: dict[str, Any] = {
            "state_file": state_file,
            "output": state.output if state else None,
            "fetched": state.fetched if state else None,
            "done": done,
            "jobs": [{**s.to_json(), "rows": rows.get(s.name)} for s in statuses],
        }
        if state is not None and len(state.job_names) < len(state.jobs):
            body["uncreated_parts"] = len(state.jobs) - len(state.job_names)
        return json.dumps(body, indent=2)
    lines = []
    if state is not None:
        source = state.input_path or "<stdin>"
        models = ", ".join(state.models or (state.model,))
        fetched = "fetched" if state.fetched else "done, not fetched yet" if done else "running"
        lines.append(
            f"{state_file}: {len(state.jobs)} job(s) for {sum(j.rows for j in state.jobs)} rows of "
            f"{source} ({models}), submitted {state.submitted}: {fetched}"
        )
    for s in statuses:
        lines.append(s.describe() + (f" [{rows[s.name]} rows]" if s.name in rows else ""))
    return "\n".join(lines)


# -- cancel ------------------------------------------------------------------------------------------


async def cancel(target: str, output: str | None, connection: Connection) -> str:
    """Cancel every job still going (of a state file, or the one named); ended jobs are left as they are."""
    state_file, job = batch_state.resolve_target(target, output)
    names = [job] if job else batch_state.load(state_file).job_names if state_file else []
    lines = []
    async with _service(connection) as service:
        for s in await _statuses(service, names):
            if s.done:
                lines.append(f"{s.name}: already {s.state}, nothing to cancel")
                continue
            await service.cancel(s.name)
            after = await service.status(s.name)
            lines.append(f"{s.name}: was {s.state}, now {after.state}")
    return "\n".join(lines)


# -- list --------------------------------------------------------------------------------------------


async def list_jobs(connection: Connection, *, limit: int, as_json: bool) -> str:
    async with _service(connection) as service:
        jobs = await service.list(limit=limit)
    if as_json:
        return json.dumps([job.to_json() for job in jobs], indent=2)
    if not jobs:
        return "no batch jobs"
    lines = []
    for job in jobs:
        age = job.age()
        counts = job.counts()
        lines.append(
            "  ".join(
                part
                for part in (
                    job.name,
                    job.state,
                    format_duration(age) if age is not None else "",
                    counts,
                    job.display_name or "",
                )
                if part
            )
        )
    return "\n".join(lines)


# -- wait / fetch without a state file -----------------------------------------------------------------


async def fetch_bare(
    job: str,
    output: str,
    connection: Connection,
    observer: RunObserver,
    *,
    wait: bool,
    poll_settings: PollSettings,
    keep_files: bool,
) -> tuple[ExitCode, RunStats]:
    """Write a job's results with no input to rebuild rows from: records carry id = key and the answer.

    OUT is written to a temporary file and renamed, so running it again rewrites the same file.
    """
    stats = RunStats()
    if detect_output_format(output, None) == "parquet":
        raise UsageError(f"-o {output}: a job fetched without its state file is written as JSONL or CSV")
    check_available(output_compression(output))
    with output_lock(output):  # one gembulk at a time writes OUT
        remove_leftovers(output)
        async with _service(connection) as service:
            statuses = await poll(
                service, [job], poll_settings, observer, wait=wait, stopping=asyncio.Event()
            )
            assert statuses is not None
            status = statuses[job]
            if not status.results_file:
                observer.message(
                    f"{job} ended {status.state} with no results; without its state file no rows can be "
                    "listed, so nothing was written"
                )
                return ExitCode.ROWS_FAILED, stats
            directory = os.path.dirname(os.path.abspath(output))
            scratch = tempfile.mkdtemp(prefix=temp_prefix(output), suffix=TEMP_SUFFIX, dir=directory)
            try:
                path = os.path.join(scratch, "results.jsonl")
                await service.download(status.results_file, path)
                await _write_bare(path, output, status.model or "?", stats)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(scratch, "results.jsonl"))
                os.rmdir(scratch)
            if not keep_files:
                for name in (status.input_file, status.results_file):
                    if name and (problem := await service.delete_file(name)):
                        observer.message(f"could not delete a batch file (it expires after 48 h): {problem}")
    return (ExitCode.ROWS_FAILED if stats.failed else ExitCode.OK), stats


async def _write_bare(results: str, output: str, model: str, stats: RunStats) -> None:
    index = await asyncio.to_thread(index_results, results)
    fmt = detect_output_format(output, None)
    directory = os.path.dirname(os.path.abspath(output))
    # Renamed over OUT: created with the umask's mode (or OUT's own), as the online writer's OUT is.
    temp = new_output_file(directory, f".{os.path.basename(output)}.", ".gembulk-tmp", like=output)
    try:
        writer = await open_writer(
            temp, fmt, (), with_parsed=False, append=False, compression=output_compression(output)
        )
        handle: IO[bytes]
        with open(results, "rb") as handle:  # noqa: ASYNC230 - a local file, read one short line at a time
            try:
                for position, (key, offset) in enumerate(index.offsets.items(), 1):
                    result = from_line(read_line(handle, offset), parse_json=False)
                    row = InputRow(id=key, fields={}, line=0, index=position)
                    await writer.write(build_record(row, model, result.outcome, mode="batch"))
                    _count(stats, result.outcome)
                for key, count in index.duplicates.items():
                    message = f"the results have {count} lines for this key; none was used"
                    result = not_answered(DUPLICATE, message)
                    row = InputRow(id=key, fields={}, line=0, index=0)
                    await writer.write(build_record(row, model, result.outcome, mode="batch"))
                    _count(stats, result.outcome)
            finally:
                await writer.aclose()
        os.replace(temp, output)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    stats.total = stats.ok + stats.failed


def _count(stats: RunStats, outcome: Outcome) -> None:
    stats.add_usage(outcome.usage)
    if outcome.error is None:
        stats.ok += 1
    else:
        stats.add_failure(outcome.error.status)
