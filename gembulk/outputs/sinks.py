"""Sinks: where the writer's encoded batches go: a file (paced fsync), a stream, or stdout (worker thread)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, BinaryIO, Protocol

from gembulk.errors import OutputClosedError

SYNC_INTERVAL = 1.0  # seconds between fsyncs while writing; close always syncs

__all__ = ["SYNC_INTERVAL", "FileSink", "OutputClosedError", "Sink", "StdoutSink"]


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def sync(self, force: bool) -> None: ...

    async def close(self) -> None: ...


class FileSink:
    """A file written through aiofiles: write + flush per batch, fsync at most every SYNC_INTERVAL.

    `durable=False` is a stream (a pipe, a device): nothing to fsync, and a reader that went away is
    OutputClosedError. `after_first_write` runs once, right after the first batch is written (the
    --overwrite temp file is made durable and renamed over OUT then).
    """

    def __init__(
        self,
        handle: Any,
        *,
        durable: bool = True,
        after_first_write: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._file = handle
        self._durable = durable
        self._after_first_write = after_first_write
        self._last_sync = time.monotonic()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:  # a raw write may take less than all of it
                written = await self._file.write(view)
                view = view[written:]
        except BrokenPipeError:
            raise OutputClosedError("the reader of the output went away") from None
        if self._after_first_write is not None:
            after, self._after_first_write = self._after_first_write, None
            await after()

    async def sync(self, force: bool) -> None:
        if not self._durable:
            return
        if force or time.monotonic() - self._last_sync >= SYNC_INTERVAL:
            await asyncio.to_thread(os.fsync, self._file.fileno())
            self._last_sync = time.monotonic()

    async def close(self) -> None:
        await self._file.close()


def _silence_stdout() -> None:
    """Point fd 1 at /dev/null so the interpreter's final flush of stdout does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass


class StdoutSink:
    """sys.stdout's byte buffer, written from a worker thread so a slow reader never blocks the loop."""

    def __init__(self, buffer: BinaryIO) -> None:
        self._buffer = buffer

    def _write_now(self, data: bytes) -> None:
        self._buffer.write(data)
        self._buffer.flush()

    async def write(self, data: bytes) -> None:
        try:
            await asyncio.to_thread(self._write_now, data)
        except BrokenPipeError:
            _silence_stdout()
            raise OutputClosedError("stdout was closed by the reader") from None
        except ValueError as exc:  # writing to a closed file object
            raise OutputClosedError(f"stdout is closed: {exc}") from None

    async def sync(self, force: bool) -> None:
        return None

    async def close(self) -> None:
        return None  # stdout belongs to the process, not to us
