"""The result writer: records in, lines out, one background task writing whatever is pending in one batch."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import aiofiles

from gembulk.errors import OutputConflictError
from gembulk.outputs.formats import Encoder, encoder_for
from gembulk.outputs.scanner import has_content, read_csv_header
from gembulk.outputs.sinks import FileSink, Sink, StdoutSink

_MAX_PENDING = 10_000  # serialized records held before write() waits for the flusher
# After a wake-up the flusher waits this long for more records before writing: under load one thread
# hop then carries many records (measured: ~9% throughput at 800 rows/s), and a record still reaches
# the OS within milliseconds of being finished.
COALESCE_SECONDS = 0.005


class ResultWriter:
    """Records in, lines out: a single background task writes whatever is pending in one batch.

    When idle each record is written as soon as it arrives; under load batches grow by themselves, so
    the cost of a thread hop is shared by many records.

    Write errors on files (disk full, permission denied) come out of write()/flush()/aclose() as the
    OSError they are; the caller decides how to report them. A closed stdout is OutputClosedError.
    """

    def __init__(self, name: str, sink: Sink, encoder: Encoder, first_items: Sequence[Any] = ()) -> None:
        self.name = name
        self._sink = sink
        self._encoder = encoder
        self._pending: list[Any] = list(first_items)
        self._queued = len(self._pending)
        self._done = 0
        self._wake = asyncio.Event()
        self._progress = asyncio.Condition()
        self._failure: BaseException | None = None
        self._closing = False
        self._closed = False
        if self._pending:
            self._wake.set()
        self._task = asyncio.get_running_loop().create_task(self._flush_loop(), name=f"writer {name}")

    async def write(self, record: Mapping[str, Any]) -> None:
        """Queue a record; it reaches the OS (written and flushed) as soon as the flusher runs."""
        await self.write_item(self._encoder.prepare(record))

    async def write_item(self, item: Any) -> None:
        """Queue a record already prepared by this writer's encoder (or one that prepares alike)."""
        if self._closing:
            raise RuntimeError(f"writer for {self.name} is closed")
        self._raise_failure()
        self._pending.append(item)
        self._queued += 1
        self._wake.set()
        if len(self._pending) >= _MAX_PENDING:  # a producer that never yields must not grow memory
            await self.flush()

    async def flush(self) -> None:
        """Wait until every record given so far is written and flushed to the OS."""
        target = self._queued
        async with self._progress:
            await self._progress.wait_for(lambda: self._done >= target or self._failure is not None)
        self._raise_failure()

    async def aclose(self) -> None:
        """Flush, fsync (files) and close; stdout is flushed but left open."""
        if self._closed:
            self._raise_failure()
            return
        self._closed = self._closing = True
        self._wake.set()
        try:
            await self._task
            if self._failure is None:
                await self._sink.sync(force=True)
        finally:
            await self._sink.close()
        self._raise_failure()

    async def __aenter__(self) -> ResultWriter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _notify(self) -> None:
        async with self._progress:
            self._progress.notify_all()

    async def _flush_loop(self) -> None:
        try:
            while True:
                await self._wake.wait()
                if not self._closing:
                    await asyncio.sleep(COALESCE_SECONDS)
                self._wake.clear()
                while self._pending:
                    batch, self._pending = self._pending, []
                    await self._sink.write(self._encoder.encode(batch))
                    self._done += len(batch)
                    await self._notify()
                    await self._sink.sync(force=False)
                if self._closing:
                    return
        except Exception as exc:
            # Kept, not raised: write(), flush() and aclose() hand it to the caller.
            self._failure = exc
            await self._notify()


def check_csv_header(path: str, existing: Sequence[str] | None, columns: Sequence[str] | None) -> None:
    """Records can be appended only under the same CSV header (None: no header, or not CSV)."""
    if existing is None or columns is None or tuple(existing) == tuple(columns):
        return
    raise OutputConflictError(
        f"{path}: the existing CSV header does not match this run's columns "
        f"(existing: {','.join(existing)}; this run: {','.join(columns)})",
        hint="use another -o path, or pass --overwrite to start afresh",
    )


async def open_writer(
    path: str,
    fmt: str,
    input_columns: Sequence[str],
    with_parsed: bool,
    append: bool,
    id_column: str | None = None,
    compression: str | None = None,
) -> ResultWriter:
    """Open an output ("-" is stdout). append keeps existing records and never repeats a CSV header
    (not for a compressed output, whose header is inside its first member)."""
    encoder = encoder_for(fmt, input_columns, with_parsed, id_column, compression)
    header = [encoder.header] if encoder.header is not None else []
    if path == "-":
        sys.stdout.flush()  # anything printed as text must come out before our bytes
        return ResultWriter("<stdout>", StdoutSink(sys.stdout.buffer), encoder, header)
    if append and await has_content(path):
        if encoder.header is not None:
            check_csv_header(path, await read_csv_header(path) or (), encoder.header)
        header = []
    # Unbuffered: each batch is one os.write, already in the OS when it returns; no separate flush hop.
    handle = await aiofiles.open(path, "ab" if append else "wb", buffering=0)
    return ResultWriter(path, FileSink(handle), encoder, header)
