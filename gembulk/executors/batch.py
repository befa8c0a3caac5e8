"""The Batch API executor: requests go to the service as JSONL jobs, outcomes come back matched by key.

Submitting is gembulk/executors/batch_submit.py; this module waits for the jobs, reads their results back
one job at a time, finishes what the jobs did not answer online (`--fallback online`) and cleans up.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import IO, Unpack

from gembulk.batch import state as batch_state
from gembulk.batch.jobs import BatchService, JobStatus, PollSettings, poll
from gembulk.batch.results import (
    DUPLICATE,
    MISSING,
    NOT_SUBMITTED,
    LineResult,
    ResultIndex,
    from_line,
    index_results,
    not_answered,
    read_line,
)
from gembulk.batch.state import BatchState, JobRef
from gembulk.executors import Emit, Executor, RequestSource
from gembulk.executors.batch_submit import BatchSubmission, SubmissionParts
from gembulk.observer import RunObserver
from gembulk.records import Outcome, PromptRequest, RowError
from gembulk.settings import BatchMode

logger = logging.getLogger(__name__)


def _tagged(outcome: Outcome, mode: str) -> Outcome:
    return replace(outcome, extra={**outcome.extra, "mode": mode})


async def _only(
    requests: AsyncIterator[PromptRequest], wanted: set[tuple[str, str]]
) -> AsyncIterator[PromptRequest]:
    async for request in requests:
        if (request.id, request.model) in wanted:
            yield request


class BatchExecutor:
    """Submits the requests as batch jobs (or adopts jobs already submitted), waits, then emits one
    outcome per row from the results, matched by key.

    Passes over the requests: one to build the JSONL parts, one to match results back (one job's key
    index in memory at a time), and one more for the rows `--fallback online` finishes. The state file
    is saved after the upload and after each job is created, before any polling, so an interrupted or
    killed run loses nothing: the jobs keep running and the next run (or `batch wait|fetch`) adopts them.
    """

    def __init__(
        self, *, online: Callable[[], Executor] | None = None, **parts: Unpack[SubmissionParts]
    ) -> None:
        self._service = parts["service"]
        self._context = parts.get("context")
        self._options = parts["options"]
        self._settings = parts["settings"]
        self._observer = parts["observer"]
        self._online = online
        self._stopping = asyncio.Event()
        self._submission = BatchSubmission(stopping=self._stopping, **parts)
        self._online_executor: Executor | None = None
        self._statuses: dict[str, JobStatus] = {}
        self._collected = False

    @property
    def state(self) -> BatchState:
        return self._submission.state

    @property
    def jobs_ended(self) -> bool:
        """Every job was seen in a final state (so none keeps running on the service)."""
        return bool(self._statuses) and all(status.done for status in self._statuses.values())

    def stop_dispatching(self) -> None:
        self._stopping.set()
        if self._online_executor is not None:
            self._online_executor.stop_dispatching()

    async def submit(self, requests: RequestSource) -> None:
        """Build, upload and create whatever is not submitted yet, saving the state file at each step."""
        await self._submission.submit(requests)

    async def run(self, requests: RequestSource, emit: Emit) -> None:
        await self.submit(requests)
        names = self.state.job_names
        if self._stopping.is_set() or not (names or self.state.media_failures):
            return
        settings = PollSettings(
            self._options.poll_interval, self._options.poll_max_interval, self._options.wait_timeout
        )
        wait = self._options.mode is not BatchMode.FETCH
        statuses = (
            await poll(self._service, names, settings, self._observer, wait=wait, stopping=self._stopping)
            if names
            else {}  # every row failed for its attachments: nothing was submitted
        )
        if statuses is None:
            return
        self._statuses = statuses
        with self._submission.scratch() as scratch:
            fallback = await self._collect(requests, emit, scratch)
        if self._stopping.is_set():
            return
        if fallback:
            await self._finish_online(requests, fallback, emit)
            if self._stopping.is_set():
                return
        self._collected = True

    async def _collect(self, requests: RequestSource, emit: Emit, scratch: str) -> set[tuple[str, str]]:
        fallback: set[tuple[str, str]] = set()
        # One cursor per model (fan-out interleaves the models row by row), each holding one job open.
        cursors: dict[str, _ResultCursor] = {}
        failures = self.state.media_failures
        try:
            async for request in requests():
                if self._stopping.is_set():
                    break
                if request.id in failures:
                    error = RowError(**failures[request.id])
                    await emit(request, _tagged(Outcome(text=None, error=error), "batch"))
                    continue
                cursor = cursors.get(request.model)
                if cursor is None:
                    jobs = [job for job in self.state.jobs if self.state.model_of(job) == request.model]
                    cursor = cursors[request.model] = _ResultCursor(
                        tuple(jobs), self._statuses, self._service, scratch, self._observer, self._parse_json
                    )
                result = await cursor.result_for(request)
                if result.retry_online and self._online is not None and self._options.fallback_online:
                    fallback.add((request.id, request.model))
                    continue
                await emit(request, _tagged(result.outcome, "batch"))
        finally:
            for cursor in cursors.values():
                cursor.close()
        return fallback

    @property
    def _parse_json(self) -> bool:
        return self._settings.json_schema is not None

    async def _finish_online(self, requests: RequestSource, wanted: set[tuple[str, str]], emit: Emit) -> None:
        assert self._online is not None
        self._observer.phase(f"--fallback online: finishing {len(wanted)} rows online")
        if self._context is not None:
            await self._context.ready(sorted({model for _, model in wanted}))
        executor = self._online_executor = self._online()

        async def emit_online(request: PromptRequest, outcome: Outcome) -> None:
            await emit(request, _tagged(outcome, "online"))

        await executor.run(lambda: _only(requests(), wanted), emit_online)

    # -- after the output is durable -----------------------------------------------------------------

    async def output_saved(self) -> None:
        """OUT now holds every row: mark the state fetched, then delete the files unless --keep-files."""
        if not self._collected:
            return
        self._submission.save(replace(self.state, fetched=True, keep_files=self._options.keep_files))
        if self._context is not None and self.state.context.get("caches"):
            await self._context.close(delete_batch=True)  # OUT holds every row: no line needs them now
            self._submission.save(replace(self.state, context={**self.state.context, "caches_deleted": True}))
        if self.state.stdin_copy:
            batch_state.remove(self.state.stdin_copy)
        if self._options.keep_files:
            return
        files = [job.input_file for job in self.state.jobs] + list(self.state.media_files)
        files += [s.results_file for s in self._statuses.values() if s.results_file]
        if await self._submission.delete(files):
            self._submission.save(replace(self.state, files_deleted=True))


class _ResultCursor:
    """Walks the jobs in row order: one job's result file downloaded and indexed at a time."""

    def __init__(
        self,
        jobs: tuple[JobRef, ...],
        statuses: dict[str, JobStatus],
        service: BatchService,
        scratch: str,
        observer: RunObserver,
        parse_json: bool,
    ) -> None:
        self._jobs = sorted((job for job in jobs if job.name), key=lambda job: job.first_index)
        self._firsts = [job.first_index for job in self._jobs]
        self._statuses = statuses
        self._service = service
        self._scratch = scratch
        self._observer = observer
        self._parse_json = parse_json
        self._current: JobRef | None = None
        self._index: ResultIndex | None = None
        self._handle: IO[bytes] | None = None

    def _job_for(self, index: int) -> JobRef | None:
        position = bisect.bisect_right(self._firsts, index) - 1
        if position >= 0 and index <= self._jobs[position].last_index:
            return self._jobs[position]
        return None

    async def result_for(self, request: PromptRequest) -> LineResult:
        job = self._job_for(request.row.index)
        if job is None:
            return not_answered(
                NOT_SUBMITTED, "this row was not in the submitted batch jobs (it was done before them)"
            )
        if job is not self._current:
            await self._open(job)
        assert job.name is not None
        status = self._statuses[job.name]
        key = request.id
        index = self._index
        if index is not None and self._handle is not None:
            offset = index.offsets.get(key)
            if offset is not None:
                return from_line(read_line(self._handle, offset), parse_json=self._parse_json)
            if key in index.duplicates:
                count = index.duplicates[key]
                return not_answered(
                    DUPLICATE, f"the results of {job.name} have {count} lines for this row; none was used"
                )
        if status.state != "SUCCEEDED":
            why = f": {status.error}" if status.error else ""
            return not_answered(
                f"BATCH_{status.state}", f"{job.name} ended {status.state} before answering this row{why}"
            )
        return not_answered(MISSING, f"the results of {job.name} have no line for this row")

    async def _open(self, job: JobRef) -> None:
        self.close()
        self._current = job
        assert job.name is not None
        results = self._statuses[job.name].results_file
        if not results:
            return
        path = os.path.join(self._scratch, f"results-{job.name.removeprefix('batches/')}.jsonl")
        await self._service.download(results, path)
        self._index = index = await asyncio.to_thread(index_results, path)
        # A local scratch file, read one short line at a time by offset; closed in close().
        self._handle = open(path, "rb")  # noqa: SIM115, ASYNC230
        if index.keys > job.rows:
            self._observer.message(
                f"{job.name}: {index.keys} result keys for {job.rows} submitted rows; extra lines ignored"
            )
        if index.unkeyed:
            self._observer.message(f"{job.name}: {index.unkeyed} result lines without a key ignored")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._index is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._index.path)
            self._index = None
