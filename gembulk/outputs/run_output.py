"""OUT as one run writes it: opened at the first record, so a run that stops before it leaves OUT as it
was; a file appended to (its torn tail cut and a killed run's held records added first) or created, or under
--overwrite written to a temp file that replaces OUT once the first record is durable; a stream written as
it comes; with --keep-order, records in input order through a reorder buffer; write errors made into
one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any, BinaryIO

import aiofiles

from gembulk.errors import OutputWriteError
from gembulk.filemodes import new_output_file
from gembulk.jsonfiles import fsync_directory
from gembulk.outputs.formats import CompressedEncoder, Encoder, plain_encoder
from gembulk.outputs.held import HeldJournal, fold_held, seed_file
from gembulk.outputs.reorder import ReorderBuffer
from gembulk.outputs.resume import ExistingOutput
from gembulk.outputs.sinks import FileSink, Sink, StdoutSink
from gembulk.outputs.target import TEMP_SUFFIX, OutputKind, OutputTarget, held_path, temp_prefix
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
    with no record), `close()` one that stopped (what was written stays), `discard()` any run, quietly.

    `keep_order` > 0 writes records in the order of their sequence numbers (write(record, seq)), holding
    at most that many; on a file they are also kept beside OUT while held. `seed` writes the first
    content of a new file of records (the records of an existing Parquet OUT).
    """

    def __init__(
        self,
        target: OutputTarget,
        encoder: Encoder,
        existing: ExistingOutput | None,
        overwrite: bool,
        *,
        keep_order: int = 0,
        seed: Callable[[BinaryIO], None] | None = None,
    ) -> None:
        self.target = target
        self._encoder = encoder
        self._existing = existing
        self._replace = overwrite and target.resumable
        self._seed = None if overwrite else seed
        self._writer: ResultWriter | None = None
        self._opening = asyncio.Lock()  # concurrent first records (online fallback) open it once
        self._temp: str | None = None  # --overwrite: the new OUT, until it is renamed over the old one
        self._handle: Any = None
        self._started_empty = False
        self.seeded = False  # the new file of records began with `seed`'s records
        self.boundary = -1  # offset of this run's first record in OUT (-1: not opened)
        self.written = 0
        self.reorder: ReorderBuffer | None = None
        self._journal: HeldJournal | None = None
        if keep_order > 0:
            if target.resumable:
                self._journal = HeldJournal(held_path(target.path), plain_encoder(encoder))
            self.reorder = ReorderBuffer(keep_order, self._write_item, self._hold, self._emptied)

    @property
    def in_order(self) -> bool:
        """OUT holds exactly this run's records, in sequence order (a --keep-order run that completed on
        an output that was empty, or replaced)."""
        return self.reorder is not None and self._started_empty and not self.reorder.out_of_order

    async def write(self, record: Mapping[str, Any], seq: int = -1) -> None:
        writer = self._writer or await self._open()
        try:
            item = self._encoder.prepare(record)
            if self.reorder is None or seq < 0:
                await writer.write_item(item)
            else:
                await self.reorder.put(seq, item)
        except OSError as exc:
            raise self._error(exc) from exc
        self.written += 1

    async def _write_item(self, item: Any) -> None:
        assert self._writer is not None
        await self._writer.write_item(item)

    async def _hold(self, item: Any) -> None:
        if self._journal is None:
            return
        if self._temp is not None:
            # --overwrite: OUT is replaced before anything is kept beside it (the held file beside the old
            # OUT, if any, is that OUT's, and goes with it).
            assert self._writer is not None
            await self._writer.flush()
            await self._promote()
        await self._journal.write(item)

    async def _emptied(self) -> None:
        journal, writer, reorder = self._journal, self._writer, self.reorder
        if journal is not None and journal.due and writer is not None and reorder is not None:
            await journal.rotate(lambda: not reorder.held, writer.flush)

    async def finish(self) -> None:
        """The run completed: everything durable, OUT created if nothing was written, the temp renamed."""
        writer = self._writer or await self._open()
        try:
            await self._drain()
            if self._temp is not None:  # nothing was written to it yet: it replaces OUT now
                await writer.flush()
                await self._promote()
            await writer.aclose()
        except OSError as exc:
            raise self._error(exc) from exc
        await self._close_journal()

    async def close(self) -> None:
        """The run stopped: what was written (held records too) is made durable; nothing is created."""
        if self._writer is None:
            return
        try:
            await self._drain()
            await self._writer.aclose()
        except OSError as exc:
            raise self._error(exc) from exc
        await self._close_journal()

    async def discard(self) -> None:
        """Close whatever is open without raising; a temp file never renamed over OUT is deleted. Held
        records that could not reach OUT stay beside it for the next run."""
        if self._writer is not None:
            try:
                await self._drain()
                await self._writer.aclose()
            except Exception:
                if self._journal is not None:
                    await self._journal.close(remove=False)
            else:
                await self._close_journal()
        if self._temp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp)
            self._temp = None

    async def _drain(self) -> None:
        if self.reorder is not None and self.reorder.held:
            await self.reorder.drain()

    async def _close_journal(self) -> None:
        """OUT is durable with every record: the held file has nothing OUT lacks."""
        if self._journal is not None:
            await self._journal.close(remove=True)

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
        self._started_empty = True
        if kind is OutputKind.STDOUT:
            sys.stdout.flush()  # anything printed as text must come out before our bytes
            return ResultWriter("<stdout>", StdoutSink(sys.stdout.buffer), self._encoder, header)
        if kind is OutputKind.STREAM:
            sink: Sink = FileSink(await self._wrap(await _open_stream(self.target.path)), durable=False)
            return ResultWriter(self.target.path, sink, self._encoder, header)
        if self._replace:
            return await self._open_temp(header)
        fd = os.open(self.target.path, _APPEND | os.O_CREAT, 0o666)
        await asyncio.to_thread(self._complete, fd)
        self.boundary = os.fstat(fd).st_size
        self._started_empty = self.boundary == 0
        if self.boundary:
            header = []  # records are appended under the header already there
        return ResultWriter(self.target.path, FileSink(await self._wrap(fd)), self._encoder, header)

    def _complete(self, fd: int) -> None:
        """Before this run appends: the torn tail of a crashed run cut, the records it held back added,
        a new file seeded."""
        existing = self._existing
        if existing is not None and existing.torn:
            os.ftruncate(fd, existing.end)
        if existing is not None and existing.held is not None:
            empty = os.fstat(fd).st_size == 0
            plain = plain_encoder(self._encoder)
            header = plain.encode([plain.header]) if empty and plain.header is not None else None
            compression = self._encoder.compression if isinstance(self._encoder, CompressedEncoder) else None
            fold_held(fd, held_path(self.target.path), existing.held, compression, header)
        if self._seed is not None and os.fstat(fd).st_size == 0:
            seed_file(fd, self._seed)
            self.seeded = True

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
        """--overwrite: the new OUT holds its first records durably; now it replaces the old one (and the
        records the old one's run held back beside it go with it)."""
        temp, self._temp = self._temp, None
        if temp is None:
            return
        try:
            await asyncio.to_thread(os.fsync, self._handle.fileno())
            await asyncio.to_thread(os.replace, temp, self.target.path)
        except BaseException:
            self._temp = temp  # discard() deletes it; the old OUT is untouched
            raise
        with contextlib.suppress(FileNotFoundError):
            os.unlink(held_path(self.target.path))
        await asyncio.to_thread(fsync_directory, self.target.directory)
