"""Sinks: where the writer's encoded batches go, a file (paced fsync) or stdout (a worker thread)."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from typing import Any, BinaryIO, Protocol

SYNC_INTERVAL = 1.0  # seconds between fsyncs while writing; close always syncs


class OutputClosedError(Exception):
    """Whoever read our stdout went away (e.g. `| head`): stop quietly, nothing more can be written."""


class Sink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def sync(self, force: bool) -> None: ...

    async def close(self) -> None: ...


class FileSink:
    """A file written through aiofiles: write + flush per batch, fsync at most every SYNC_INTERVAL."""

    def __init__(self, handle: Any) -> None:
        self._file = handle
        self._last_sync = time.monotonic()

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # a raw write may take less than all of it
            written = await self._file.write(view)
            view = view[written:]

    async def sync(self, force: bool) -> None:
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
