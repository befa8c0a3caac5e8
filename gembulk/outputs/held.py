"""The records --keep-order holds back, kept in a file beside OUT (OUT.gembulk-held, 0600) until they are
written to OUT in their turn: a kill loses none of them, and the next run on OUT appends them to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO

import aiofiles

from gembulk.filemodes import PRIVATE
from gembulk.jsonfiles import fsync_directory
from gembulk.outputs.compression import CompressingFile
from gembulk.outputs.formats import Encoder
from gembulk.outputs.sinks import FileSink
from gembulk.outputs.writer import ResultWriter

# The file is started afresh when nothing is held and it has seen this many records (all of them in OUT
# by then), so it stays small beside a long run.
ROTATE_RECORDS = 50_000
_COPY = 1 << 20


class HeldJournal:
    """The held records as they are held, in OUT's format, uncompressed; created at the first one."""

    def __init__(self, path: str, encoder: Encoder) -> None:
        self.path = path
        self._encoder = encoder
        self._writer: ResultWriter | None = None
        self._opening = asyncio.Lock()
        self.records = 0

    async def write(self, item: Any) -> None:
        if self._writer is None:
            async with self._opening:  # two records held at once open it once
                if self._writer is None:
                    self._writer = await self._open()
        await self._writer.write_item(item)
        self.records += 1

    async def _open(self) -> ResultWriter:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        handle = await aiofiles.open(os.open(self.path, flags, PRIVATE), "wb", buffering=0)
        header = [self._encoder.header] if self._encoder.header is not None else []
        return ResultWriter(self.path, FileSink(handle), self._encoder, header)

    @property
    def due(self) -> bool:
        """Large enough to start afresh (see rotate)."""
        return self.records >= ROTATE_RECORDS

    async def rotate(
        self, nothing_held: Callable[[], bool], out_flushed: Callable[[], Awaitable[None]]
    ) -> None:
        """Start afresh when nothing is held: every record this file has was written to OUT, and is in
        the OS once `out_flushed` returns. Records held meanwhile wait, then go to the new file."""
        async with self._opening:
            if self._writer is None or not nothing_held():
                return
            writer, self._writer = self._writer, None
            self.records = 0
            await out_flushed()
            with contextlib.suppress(OSError):
                await writer.aclose()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    async def close(self, *, remove: bool) -> None:
        """Close it; `remove` once OUT durably holds every record it has (else the next run folds it)."""
        writer, self._writer = self._writer, None
        self.records = 0
        if writer is not None:
            with contextlib.suppress(OSError):
                await writer.aclose()
        if remove:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def fold_held(
    fd: int, held: str, span: tuple[int, int], compression: str | None, header: bytes | None
) -> None:
    """Append the complete records a killed run held back (bytes `span` of `held`) to OUT, open at `fd`
    (O_APPEND), preceded by `header` when OUT is empty; make it durable, then delete `held`."""
    start, end = span
    if end > start:
        with os.fdopen(os.dup(fd), "wb") as raw, open(held, "rb") as source:
            target: Any = CompressingFile(raw, compression) if compression is not None else raw
            if header:
                target.write(header)
            source.seek(start)
            left = end - start
            while left > 0 and (chunk := source.read(min(_COPY, left))):
                target.write(chunk)
                left -= len(chunk)
            if compression is not None:
                target.close()
            raw.flush()
        os.fsync(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(held)
    fsync_directory(os.path.dirname(os.path.abspath(held)))


def seed_file(fd: int, seed: Callable[[BinaryIO], None]) -> None:
    """Write a new file's first content with `seed(file)` (the records of a Parquet OUT), durably."""
    with os.fdopen(os.dup(fd), "wb") as raw:
        seed(raw)
        raw.flush()
    os.fsync(fd)
