"""Submitting a batch run: the requests built into JSONL parts (attachments uploaded first), the parts
uploaded and created as jobs, and the state file saved at every step, so that an interrupted or killed run
loses nothing and submits nothing twice: the jobs keep running and the next run adopts them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from typing import NotRequired, TypedDict, Unpack

from gembulk.batch import state as batch_state
from gembulk.batch.build import Part, build_parts
from gembulk.batch.jobs import BatchService
from gembulk.batch.state import BatchState, JobRef
from gembulk.context.runtime import ContextRuntime
from gembulk.errors import GembulkError
from gembulk.executors import RequestSource
from gembulk.executors.online import fatal_error
from gembulk.filemodes import copy_private
from gembulk.media import MediaResolver, resolve_in_order
from gembulk.observer import RunObserver
from gembulk.outputs.target import TEMP_SUFFIX, temp_prefix
from gembulk.records import CallFailed, PromptRequest, RowError
from gembulk.settings import BatchOptions, GenerationSettings


class SubmissionParts(TypedDict):
    """What a batch run is built from: BatchSubmission takes these, BatchExecutor these and its fallback."""

    service: BatchService
    options: BatchOptions
    state: BatchState
    state_file: str | None
    settings: GenerationSettings
    observer: RunObserver
    stdin_spool: NotRequired[str | None]
    media: NotRequired[MediaResolver | None]
    context: NotRequired[ContextRuntime | None]


class BatchSubmission:
    """The jobs of one batch run as far as submitted (`state`), and the steps that submit the rest."""

    def __init__(self, *, stopping: asyncio.Event, **parts: Unpack[SubmissionParts]) -> None:
        state, state_file, context = parts["state"], parts["state_file"], parts.get("context")
        self._service = parts["service"]
        self._context = context
        self._options = parts["options"]
        self._state = state
        self._state_file = state_file
        self._settings = parts["settings"]
        self._observer = parts["observer"]
        self._stopping = stopping
        self._stdin_spool = parts.get("stdin_spool")
        self._media = parts.get("media")
        self._adopted = bool(state.jobs)  # jobs from an earlier run: some may be created but unrecorded
        if context is not None and state.jobs:  # their lines name the caches the state file lists
            context.adopt(state.context.get("caches") or {})
        self._scratch_parent = os.path.dirname(state_file) if state_file else None
        # Named as OUT's temporary files, so the next run on OUT removes what a killed one left.
        self._scratch_prefix = temp_prefix(state.output) if state_file else ".gembulk-batch-"

    @property
    def state(self) -> BatchState:
        return self._state

    async def submit(self, requests: RequestSource) -> None:
        """Build, upload and create whatever is not submitted yet, saving the state file at each step."""
        if not self._state.jobs:
            failures: dict[str, dict[str, object]] = {}
            context = self._context
            if context is not None:
                await context.open_for_batch()
            with self.scratch() as scratch:
                try:
                    parts = await build_parts(
                        self._with_media(requests(), failures),
                        self._settings,
                        scratch,
                        max_rows=self._options.max_rows,
                        max_bytes=self._options.max_bytes,
                        stopping=self._stopping.is_set,
                        settings_for=context.settings_for if context is not None else None,
                    )
                except BaseException:
                    await self._delete_media()
                    raise
                if failures:  # kept in memory too: a run whose every row failed has no job to save
                    self._state = replace(self._state, media_failures=failures)
                if not parts or self._stopping.is_set():
                    await self._delete_media()
                    return
                self._keep_stdin_copy()
                rows = sum(p.rows for p in parts)
                size = sum(p.bytes for p in parts)
                self._observer.phase(
                    f"uploading {rows} rows in {len(parts)} batch input file(s), {size / 1e6:.1f} MB"
                )
                jobs = await self._upload(parts)
                if jobs is None:
                    await self._delete_media()
                    return
            media_files = tuple(self._media.uploaded) if self._media is not None else ()
            state = replace(self._state, jobs=tuple(jobs), media_files=media_files)
            if context is not None:  # its caches and uploads now live as long as the jobs
                caches = await context.commit_for_jobs()
                state = replace(
                    state,
                    media_files=media_files + tuple(context.take_uploads()),
                    context={**state.context, "caches": caches},
                )
            self.save(state)
        await self._create_jobs()

    async def _with_media(
        self, requests: AsyncIterator[PromptRequest], failures: dict[str, dict[str, object]]
    ) -> AsyncIterator[PromptRequest]:
        """The requests with their attachments uploaded (batch lines can only reference files); a row
        whose media cannot be had is left out of the jobs and remembered as a failed row."""
        if self._media is None:
            async for request in requests:
                yield request
            return
        try:
            async for request, resolved in resolve_in_order(requests, self._media, self._media.window):
                if isinstance(resolved, RowError):
                    failures[request.id] = resolved.to_json()
                else:
                    yield resolved
        except CallFailed as failure:
            raise fatal_error(failure) from failure

    async def _delete_media(self) -> None:
        if self._media is not None:
            await self._media.delete_uploads(self._observer.message)

    async def _upload(self, parts: list[Part]) -> list[JobRef] | None:
        prefix = self._display_prefix()
        several_models = len({part.model for part in parts}) > 1
        jobs: list[JobRef] = []
        for number, part in enumerate(parts, 1):
            if self._stopping.is_set():
                await self.delete([job.input_file for job in jobs])
                return None
            label = f"{prefix} {part.model}" if several_models else prefix
            label = f"{label} part {number}/{len(parts)}" if len(parts) > 1 else label
            try:
                file_name = await self._service.upload(part.path, label)
            except GembulkError:
                await self.delete([job.input_file for job in jobs])  # nothing half-submitted is left
                raise
            os.unlink(part.path)
            model = part.model if part.model != self._state.model else None
            jobs.append(
                JobRef(
                    file_name, part.rows, part.first_index, part.last_index, part.bytes, label, model=model
                )
            )
        return jobs

    async def _create_jobs(self) -> None:
        for position, job in enumerate(self._state.jobs):
            if job.name is not None:
                continue
            if self._stopping.is_set():
                return
            try:
                name = None
                if self._adopted:  # the earlier run may have died between create and save
                    name = await self._service.find_job_for_file(job.input_file)
                if name is None:
                    name = await self._service.create(
                        self._state.model_of(job), job.input_file, job.display_name
                    )
            except GembulkError:
                if not self._state.job_names:  # refused outright (unknown model, bad key): leave nothing
                    await self._abandon_uploads()
                raise
            self.save(self._state.with_job(position, replace(job, name=name)))
            self._observer.phase(f"created {name} for {job.rows} rows")

    async def _abandon_uploads(self) -> None:
        await self.delete([job.input_file for job in self._state.jobs] + list(self._state.media_files))
        if self._context is not None:  # no job names its caches: the run's end deletes them
            self._context.kept_for_jobs = False
        self._state = replace(self._state, jobs=())
        if self._state_file is not None:
            batch_state.remove(self._state_file)
        if self._state.stdin_copy and self._stdin_spool is not None:
            batch_state.remove(self._state.stdin_copy)

    def _display_prefix(self) -> str:
        if self._options.display_name:
            return self._options.display_name
        return f"gembulk {os.path.basename(self._state.output)}"

    def _keep_stdin_copy(self) -> None:
        """Stdin cannot be read again by `batch wait|fetch`: keep the spooled copy beside OUT."""
        target = self._state.stdin_copy
        if target is None or self._stdin_spool is None:
            return
        batch_state.remove(target)  # a copy left by an earlier submission for this OUT
        try:
            os.link(self._stdin_spool, target)
        except OSError:
            copy_private(self._stdin_spool, target)

    def save(self, state: BatchState) -> None:
        self._state = state
        if self._state_file is not None:
            batch_state.save(self._state_file, state)

    @contextlib.contextmanager
    def scratch(self) -> Iterator[str]:
        """A temporary directory beside OUT (else the system's) for part and result files."""
        path = tempfile.mkdtemp(prefix=self._scratch_prefix, suffix=TEMP_SUFFIX, dir=self._scratch_parent)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    async def delete(self, files: list[str]) -> bool:
        """Delete service files; a file that cannot be deleted is reported (it expires anyway)."""
        problems = [problem for name in files if (problem := await self._service.delete_file(name))]
        for problem in problems:
            self._observer.message(f"could not delete a batch file (it expires after 48 h): {problem}")
        return not problems
