"""OUT as one run writes it: opened at the first record, so a run that stops before it leaves OUT as it
was; a file appended to (its torn tail cut first) or created, or under --overwrite written to a temp file
that replaces OUT once the first record is durable; a stream written as it comes; write errors made into
one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Mapping
from typing import Any

import aiofiles

from gembulk.errors import OutputWriteError
from gembulk.filemodes import new_output_file
from gembulk.jsonfiles import fsync_directory
from gembulk.outputs.formats import Encoder
from gembulk.outputs.resume import ExistingOutput
from gembulk.outputs.sinks import FileSink, Sink, StdoutSink
from gembulk.outputs.target import TEMP_SUFFIX, OutputKind, OutputTarget, temp_prefix
from gembulk.outputs.writer import ResultWriter

_APPEND = os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC
_READER_POLL = 0.05  # seconds between tries to open a FIFO that has no reader yet


async def _open_stream(path: str) -> int:
    """Open a stream for writing: no O_CREAT, no O_TRUNC (/dev/stdout redirected with >> to a file must
    not be truncated). A FIFO waits for its reader, as the user asked, but polled without blocking: a
    thread stuck in open() would keep the process from ending on Ctrl-C."""
    while True:
        try:
            fd = os.open(path, _APPEND | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:  # ENXIO: a FIFO with no reader yet
                raise
            await asyncio.sleep(_READER_POLL)
            continue
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return fd


class RunOutput:
    """The records of one run, in; OUT, out. `finish()` ends a run that completed (OUT then exists even
    with no record), `close()` one that stopped (what was written stays), `discard()` any run, quietly."""

    def __init__(
        self, target: OutputTarget, encoder: Encoder, existing: ExistingOutput | None, overwrite: bool
    ) -> None:
        self.target = target
        self._encoder = encoder
        self._existing = existing
        self._replace = overwrite and target.resumable
        self._writer: ResultWriter | None = None
        self._opening = asyncio.Lock()  # concurrent first records (online fallback) open it once
        self._temp: str | None = None  # --overwrite: the new OUT, until it is renamed over the old one
        self._handle: Any = None
        self.boundary = -1  # offset of this run's first record in OUT (-1: not opened)
        self.written = 0

    async def write(self, record: Mapping[str, Any]) -> None:
        writer = self._writer or await self._open()
        try:
            await writer.write(record)
        except OSError as exc:
            raise self._error(exc) from exc
        self.written += 1

    async def finish(self) -> None:
        """The run completed: everything durable, OUT created if nothing was written, the temp renamed."""
        writer = self._writer or await self._open()
        try:
            if self._temp is not None:  # nothing was written to it yet: it replaces OUT now
                await writer.flush()
                await self._promote()
            await writer.aclose()
        except OSError as exc:
            raise self._error(exc) from exc

    async def close(self) -> None:
        """The run stopped: what was written is made durable; nothing is created."""
        if self._writer is None:
            return
        try:
            await self._writer.aclose()
        except OSError as exc:
            raise self._error(exc) from exc

    async def discard(self) -> None:
        """Close whatever is open without raising; a temp file never renamed over OUT is deleted."""
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._writer.aclose()
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None

    def _error(self, exc: OSError) -> OutputWriteError:
        return OutputWriteError(self.target.path, exc)

    async def _open(self) -> ResultWriter:
        async with self._opening:
            if self._writer is None:
                try:
                    self._writer = await self._open_writer()
                except OSError as exc:
                    raise self._error(exc) from exc
            return self._writer

    async def _open_writer(self) -> ResultWriter:
        header = [self._encoder.header] if self._encoder.header is not None else []
        kind = self.target.kind
        if kind is OutputKind.STDOUT:
            sys.stdout.flush()  # anything printed as text must come out before our bytes
            return ResultWriter("<stdout>", StdoutSink(sys.stdout.buffer), self._encoder, header)
        if kind is OutputKind.STREAM:
            sink: Sink = FileSink(await self._wrap(await _open_stream(self.target.path)), durable=False)
            return ResultWriter(self.target.path, sink, self._encoder, header)
        if self._replace:
            return await self._open_temp(header)
        fd = os.open(self.target.path, _APPEND | os.O_CREAT, 0o666)
        if self._existing is not None and self._existing.torn:
            os.ftruncate(fd, self._existing.end)  # the torn tail of a crashed run
        self.boundary = os.fstat(fd).st_size
        if self.boundary:
            header = []  # records are appended under the header already there
        return ResultWriter(self.target.path, FileSink(await self._wrap(fd)), self._encoder, header)

    async def _open_temp(self, header: list[Any]) -> ResultWriter:
        path = self.target.path
        self._temp = new_output_file(self.target.directory, temp_prefix(path), TEMP_SUFFIX, like=path)
        fd = os.open(self._temp, _APPEND)
        self.boundary = 0
        sink = FileSink(await self._wrap(fd), after_first_write=self._promote)
        return ResultWriter(path, sink, self._encoder, header)

    async def _wrap(self, fd: int) -> Any:
        # Unbuffered: each batch is one os.write, already in the OS when it returns; no separate flush hop.
        # "wb" on a descriptor truncates nothing: O_APPEND, set when it was opened, decides.
        self._handle = await aiofiles.open(fd, "wb", buffering=0)
        return self._handle

    async def _promote(self) -> None:
        """--overwrite: the new OUT holds its first records durably; now it replaces the old one."""
        temp, self._temp = self._temp, None
        if temp is None:
            return
        try:
            await asyncio.to_thread(os.fsync, self._handle.fileno())
            await asyncio.to_thread(os.replace, temp, self.target.path)
        except BaseException:
            self._temp = temp  # discard() deletes it; the old OUT is untouched
            raise
        await asyncio.to_thread(fsync_directory, self.target.directory)
