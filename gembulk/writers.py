"""Result writers (JSONL/CSV to a file or stdout) and resume state read back from an existing output."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO, Protocol

import aiofiles
import aiofiles.os

from gembulk.errors import InputError, OutputConflictError, UsageError
from gembulk.jsonfiles import replaced_atomically

OUTPUT_FORMATS: tuple[str, ...] = ("jsonl", "csv")
CSV_BASE_COLUMNS: tuple[str, ...] = (
    "id",
    "response",
    "error_code",
    "error_status",
    "error_message",
    "finish_reason",
    "prompt_tokens",
    "output_tokens",
    "thoughts_tokens",
    "total_tokens",
    "model",
)
_USAGE_COLUMNS = ("prompt_tokens", "output_tokens", "thoughts_tokens", "total_tokens")
_ERROR_COLUMNS = ("error_code", "error_status", "error_message")

SYNC_INTERVAL = 1.0  # seconds between fsyncs while writing; close always syncs
CHUNK_SIZE = 256 * 1024  # read size when scanning an existing output
_MAX_PENDING = 10_000  # serialized records held before write() waits for the flusher
# After a wake-up the flusher waits this long for more records before writing: under load one thread
# hop then carries many records (measured: ~9% throughput at 800 rows/s), and a record still reaches
# the OS within milliseconds of being finished.
COALESCE_SECONDS = 0.005
# RFC 4180 line ending. With "\n" the csv module leaves a field holding a bare "\r" unquoted, and such
# a file no longer parses; with "\r\n" both characters force quoting.
_CSV_LINE_END = "\r\n"
_TEMP_SUFFIX = ".gembulk-tmp"


class OutputClosedError(Exception):
    """Whoever read our stdout went away (e.g. `| head`): stop quietly, nothing more can be written."""


def detect_output_format(path: str, explicit: str | None) -> str:
    """The output format: the explicit one, else .csv means csv and everything else jsonl."""
    if explicit is not None:
        fmt = explicit.lower()
        if fmt not in OUTPUT_FORMATS:
            raise UsageError(f"unknown output format '{explicit}' (accepted: {', '.join(OUTPUT_FORMATS)})")
        return fmt
    return "csv" if path != "-" and path.lower().endswith(".csv") else "jsonl"


# ---------------------------------------------------------------------------------------------------
# CSV layout.


def csv_columns(input_columns: Sequence[str], with_parsed: bool) -> tuple[str, ...]:
    """Header of a CSV output: result columns, then the input columns carried along."""
    columns = list(CSV_BASE_COLUMNS)
    if with_parsed:
        columns.append("parsed")
    listed = set(columns)
    columns.extend(c for c in dict.fromkeys(input_columns) if c not in listed)
    return tuple(columns)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return _json(value)


def _flat_result(record: Mapping[str, Any]) -> dict[str, Any]:
    error = record.get("error")
    usage = record.get("usage") or {}
    flat: dict[str, Any] = {
        "id": record.get("id"),
        "response": record.get("response"),
        "finish_reason": record.get("finish_reason"),
        "model": record.get("model"),
        # parsed is always JSON in CSV, so a parsed string "12" cannot come back as the number 12.
        "parsed": None if record.get("parsed") is None else _json(record["parsed"]),
    }
    for column in _USAGE_COLUMNS:
        flat[column] = usage.get(column)
    if error is None:
        flat.update(error_code=None, error_status=None, error_message=None)
    else:
        # A failure must never read back as a success, so its status cell is never empty.
        flat.update(
            error_code=error.get("code"),
            error_status=error.get("status") or "ERROR",
            error_message=error.get("message"),
        )
    return flat


def record_to_csv_row(record: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """The CSV cells of a record: None is empty, strings as is, anything else JSON."""
    flat = _flat_result(record)
    return [_cell(flat[c] if c in flat else record.get(c)) for c in columns]


def _int_or_none(cell: str) -> int | None:
    try:
        return int(cell)
    except ValueError:
        return None


def _parsed_from_cell(cell: str) -> Any:
    if not cell:
        return None
    try:
        return json.loads(cell)
    except json.JSONDecodeError:
        return cell


def csv_row_to_record(row: Mapping[str, str]) -> dict[str, Any]:
    """A record from CSV cells keyed by header: the inverse of record_to_csv_row, input fields as strings."""
    failed = any(row.get(c) for c in _ERROR_COLUMNS)
    error = None
    if failed:
        code = row.get("error_code", "")
        error = {
            "code": _int_or_none(code) if code else None,
            "status": row.get("error_status", ""),
            "message": row.get("error_message", ""),
        }
    usage = None
    if any(row.get(c) for c in _USAGE_COLUMNS):
        usage = {c: _int_or_none(row.get(c, "")) or 0 for c in _USAGE_COLUMNS}
    response = row.get("response", "")
    record: dict[str, Any] = {
        "id": row["id"],
        "response": (response or None) if failed else response,
        "error": error,
        "finish_reason": row.get("finish_reason") or None,
        "usage": usage,
        "model": row.get("model") or None,
    }
    if "parsed" in row:
        record["parsed"] = _parsed_from_cell(row["parsed"])
    for column, cell in row.items():
        if column not in record and column not in CSV_BASE_COLUMNS:
            record[column] = cell
    return record


# ---------------------------------------------------------------------------------------------------
# Encoders: prepare() runs in write() so a bad record fails its caller; encode() runs once per batch.


class _Encoder(Protocol):
    def prepare(self, record: Mapping[str, Any]) -> Any: ...

    def encode(self, items: list[Any]) -> bytes: ...


class _JsonlEncoder:
    def prepare(self, record: Mapping[str, Any]) -> bytes:
        line = _json(record) + "\n"
        try:
            return line.encode()
        except UnicodeEncodeError:
            # A lone surrogate (possible in JSON input) has no UTF-8 form; JSON escapes can carry it.
            return (json.dumps(record, separators=(",", ":")) + "\n").encode()

    def encode(self, items: list[bytes]) -> bytes:
        return b"".join(items)


class _CsvEncoder:
    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = tuple(columns)

    def prepare(self, record: Mapping[str, Any]) -> list[str]:
        return record_to_csv_row(record, self.columns)

    def encode(self, items: list[list[str]]) -> bytes:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator=_CSV_LINE_END).writerows(items)
        # CSV has no escape for a lone surrogate; replacing it beats losing the whole batch.
        return buffer.getvalue().encode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------------
# Sinks: where encoded batches go.


class _Sink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def sync(self, force: bool) -> None: ...

    async def close(self) -> None: ...


class _FileSink:
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


class _StdoutSink:
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


# ---------------------------------------------------------------------------------------------------
# The writer.


class ResultWriter:
    """Records in, lines out: a single background task writes whatever is pending in one batch.

    When idle each record is written as soon as it arrives; under load batches grow by themselves, so
    the cost of a thread hop is shared by many records.

    Write errors on files (disk full, permission denied) come out of write()/flush()/aclose() as the
    OSError they are; the caller decides how to report them. A closed stdout is OutputClosedError.
    """

    def __init__(self, name: str, sink: _Sink, encoder: _Encoder, first_items: Sequence[Any] = ()) -> None:
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
        if self._closing:
            raise RuntimeError(f"writer for {self.name} is closed")
        self._raise_failure()
        self._pending.append(self._encoder.prepare(record))
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


async def _has_content(path: str) -> bool:
    try:
        return (await aiofiles.os.stat(path)).st_size > 0
    except FileNotFoundError:
        return False


async def _check_csv_header(path: str, columns: tuple[str, ...]) -> None:
    header = await _read_csv_header(path)
    if header != columns:
        raise OutputConflictError(
            f"{path}: the existing CSV header does not match this run's columns "
            f"(existing: {','.join(header or ())}; this run: {','.join(columns)})"
        )


async def open_writer(
    path: str, fmt: str, input_columns: Sequence[str], with_parsed: bool, append: bool
) -> ResultWriter:
    """Open an output ("-" is stdout). append keeps existing records and never repeats a CSV header."""
    if fmt not in OUTPUT_FORMATS:
        raise UsageError(f"unknown output format '{fmt}' (accepted: {', '.join(OUTPUT_FORMATS)})")
    encoder: _Encoder
    header: list[tuple[str, ...]] = []
    if fmt == "csv":
        columns = csv_columns(input_columns, with_parsed)
        encoder = _CsvEncoder(columns)
        header = [columns]
    else:
        encoder = _JsonlEncoder()
    if path == "-":
        sys.stdout.flush()  # anything printed as text must come out before our bytes
        return ResultWriter("<stdout>", _StdoutSink(sys.stdout.buffer), encoder, header)
    if append and await _has_content(path):
        if header:
            await _check_csv_header(path, header[0])
        header = []
    # Unbuffered: each batch is one os.write, already in the OS when it returns; no separate flush hop.
    handle = await aiofiles.open(path, "ab" if append else "wb", buffering=0)
    return ResultWriter(path, _FileSink(handle), encoder, header)


# ---------------------------------------------------------------------------------------------------
# Reading an existing output back.


# A record is one answer of one model to one row: with several models (-m a -m b) an id has a record
# per model, so resume and compaction key records by (id, model).
RecordKey = tuple[str, str]


@dataclass(frozen=True)
class ExistingOutput:
    """What an earlier (possibly crashed) run left in the output file."""

    done: frozenset[RecordKey]  # (id, model) with a success record (error is None)
    failed: frozenset[RecordKey]  # (id, model) whose records are all failures
    records: int  # complete records found
    torn: bool  # the file ended in a torn (partial) last record, which was dropped
    needs_compaction: bool  # more than one record for some (id, model)

    @property
    def done_ids(self) -> frozenset[str]:
        return frozenset(record_id for record_id, _ in self.done)

    @property
    def failed_ids(self) -> frozenset[str]:
        return frozenset(record_id for record_id, _ in self.failed)


Line = tuple[int, int, bytes]  # byte offset, 1-based line number, the line with its b"\n" (if any)


async def _file_lines(path: str) -> AsyncIterator[list[Line]]:
    """Batches of physical lines; only the very last one may lack its newline."""
    async with aiofiles.open(path, "rb") as handle:
        pieces: list[bytes] = []  # start of a line longer than a chunk
        base = 0  # offset of pieces[0]
        number = 0
        while chunk := await handle.read(CHUNK_SIZE):
            if b"\n" not in chunk:
                pieces.append(chunk)
                continue
            buffer = b"".join(pieces) + chunk if pieces else chunk
            batch: list[Line] = []
            position = 0
            while (newline := buffer.find(b"\n", position)) >= 0:
                number += 1
                batch.append((base + position, number, buffer[position : newline + 1]))
                position = newline + 1
            rest = buffer[position:]
            pieces = [rest] if rest else []
            base += position
            yield batch
        if pieces:
            yield [(base, number + 1, b"".join(pieces))]


class _NotARecord(Exception):
    """A complete line that cannot be a gembulk record whatever crash happened."""


class _Damaged(Exception):
    """A record that does not parse: a crash artifact if it is the last one, an error otherwise."""


def _jsonl_record(data: bytes) -> tuple[RecordKey, bool]:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Damaged from None
    if not isinstance(value, dict) or "error" not in value:
        raise _NotARecord("expected a JSON object with 'id' and 'error'")
    record_id, error = value.get("id"), value["error"]
    if not isinstance(record_id, str) or not record_id or not (error is None or isinstance(error, dict)):
        raise _NotARecord("'id' must be a non-empty string and 'error' null or an object")
    return (record_id, str(value.get("model") or "")), error is None


def _csv_fields(data: bytes) -> list[str]:
    try:
        return next(csv.reader([data.decode()]), [])
    except (csv.Error, UnicodeDecodeError):
        raise _Damaged from None


class _OutputScanner:
    """Validates an existing output record by record and finds where a torn tail starts."""

    def __init__(self, path: str, fmt: str, visit: Callable[[RecordKey, bool, int], None]) -> None:
        self.path = path
        self.records = 0
        self.body_start = 0  # offset of the first record (after a CSV header)
        self._csv = fmt == "csv"
        self._visit = visit
        self._header: list[str] | None = None
        self._suspect: Line | None = None  # an unparsable record: fine only if nothing follows it
        self._parts: list[bytes] = []  # lines of a CSV record still open (inside quotes)
        self._start: tuple[int, int] = (0, 0)
        self._odd_quotes = False

    def line(self, offset: int, number: int, data: bytes) -> None:
        if not self._csv:
            self._record(offset, number, data, complete=data.endswith(b"\n"))
            return
        if not self._parts:
            self._start = (offset, number)
        self._parts.append(data)
        self._odd_quotes ^= bool(data.count(b'"') & 1)
        if not self._odd_quotes and data.endswith(b"\n"):
            self._flush_csv(complete=True)

    def finish(self) -> int | None:
        """Offset where a torn tail starts (to be cut off), or None when the file ends cleanly."""
        if self._parts:
            self._flush_csv(complete=False)
        if self._suspect is None:
            return None
        offset, number, data = self._suspect
        if not self._plausible_tail(data):
            raise self._error(number, "the file does not look like a gembulk output")
        return offset

    def _flush_csv(self, complete: bool) -> None:
        data = b"".join(self._parts)
        self._parts = []
        self._odd_quotes = False
        self._record(*self._start, data, complete=complete)

    def _error(self, number: int, reason: str) -> InputError:
        return InputError(f"{self.path}:{number}: not a gembulk record ({reason})")

    def _plausible_tail(self, data: bytes) -> bool:
        """Whether truncating this tail can only drop a crash artifact, never someone else's data."""
        if self._csv:
            if self._header is not None:
                return True
            expected = ",".join(CSV_BASE_COLUMNS).encode()
            head = data.rstrip(b"\r\n")
            return expected.startswith(head) or head.startswith(expected)
        return self.records > 0 or data.lstrip().startswith(b"{")

    def _record(self, offset: int, number: int, data: bytes, complete: bool) -> None:
        if not data.strip():
            return
        if self._suspect is not None:
            raise self._error(self._suspect[1], "unreadable, and more records follow it")
        if not complete:
            self._suspect = (offset, number, data)
            return
        try:
            if self._csv and self._header is None:
                self._take_header(number, data)
                self.body_start = offset + len(data)
                return
            record_id, ok = self._csv_record(data) if self._csv else _jsonl_record(data)
        except _Damaged:
            self._suspect = (offset, number, data)
            return
        except _NotARecord as exc:
            raise self._error(number, str(exc)) from None
        self.records += 1
        self._visit(record_id, ok, offset)

    def _take_header(self, number: int, data: bytes) -> None:
        try:
            header = _csv_fields(data)
        except _Damaged:
            header = []
        if tuple(header[: len(CSV_BASE_COLUMNS)]) != CSV_BASE_COLUMNS:
            raise self._error(number, f"the CSV header does not start with {','.join(CSV_BASE_COLUMNS)}")
        self._header = header

    def _csv_record(self, data: bytes) -> tuple[RecordKey, bool]:
        assert self._header is not None
        fields = _csv_fields(data)
        if len(fields) != len(self._header) or not fields[0]:
            raise _Damaged
        row = dict(zip(self._header, fields, strict=True))
        return (row["id"], row.get("model", "")), not any(row[c] for c in _ERROR_COLUMNS)


async def _scan_output(
    path: str, fmt: str, visit: Callable[[RecordKey, bool, int], None]
) -> tuple[_OutputScanner, int | None]:
    scanner = _OutputScanner(path, fmt, visit)
    async for batch in _file_lines(path):
        for offset, number, data in batch:
            scanner.line(offset, number, data)
    return scanner, scanner.finish()


async def _read_csv_header(path: str) -> tuple[str, ...] | None:
    """The first record of a CSV file, or None when the file has none complete."""
    parts: list[bytes] = []
    odd = False
    async with contextlib.aclosing(_file_lines(path)) as batches:
        async for batch in batches:
            for _, _, data in batch:
                parts.append(data)
                odd ^= bool(data.count(b'"') & 1)
                if not odd and data.endswith(b"\n"):
                    try:
                        return tuple(_csv_fields(b"".join(parts)))
                    except _Damaged:
                        return None
    return None


def _truncate(path: str, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())


async def load_existing(path: str, fmt: str) -> ExistingOutput | None:
    """Resume state of an output; a torn last record is cut off the file. None if there is no output."""
    if not await _has_content(path):
        return None
    done: set[RecordKey] = set()
    failed: set[RecordKey] = set()
    repeated = False

    def visit(record_id: RecordKey, ok: bool, offset: int) -> None:
        nonlocal repeated
        repeated = repeated or record_id in done or record_id in failed
        if ok:
            done.add(record_id)
            failed.discard(record_id)
        elif record_id not in done:
            failed.add(record_id)

    scanner, torn_at = await _scan_output(path, fmt, visit)
    if torn_at is not None:
        await asyncio.to_thread(_truncate, path, torn_at)
    return ExistingOutput(frozenset(done), frozenset(failed), scanner.records, torn_at is not None, repeated)


# ---------------------------------------------------------------------------------------------------
# Compaction.


def _record_at(source: BinaryIO, offset: int, csv_format: bool) -> bytes:
    source.seek(offset)
    if not csv_format:
        return source.readline()
    parts: list[bytes] = []
    odd = False
    while line := source.readline():
        parts.append(line)
        odd ^= bool(line.count(b'"') & 1)
        if not odd:
            break
    return b"".join(parts)


def _rewrite(path: str, header_end: int, offsets: list[int], csv_format: bool) -> None:
    """Copy the header and the chosen records to a temp file beside path, then swap it in atomically."""
    prefix = f".{os.path.basename(path)}."
    with (
        open(path, "rb") as source,
        replaced_atomically(path, prefix=prefix, suffix=_TEMP_SUFFIX, keep_mode=True) as target,
    ):
        target.write(source.read(header_end))
        for offset in offsets:
            target.write(_record_at(source, offset, csv_format))


async def compact(path: str, fmt: str) -> int:
    """Rewrite an output with one record per (id, model): its last success, else its last record.

    Returns the count.

    Ids keep the order of their first appearance. Only an offset per id is held in memory: a first pass
    picks the records, a second copies them.
    """
    keep: dict[RecordKey, int] = {}
    succeeded: set[RecordKey] = set()

    def visit(record_id: RecordKey, ok: bool, offset: int) -> None:
        if ok:
            succeeded.add(record_id)
            keep[record_id] = offset
        elif record_id not in succeeded:
            keep[record_id] = offset

    scanner, _ = await _scan_output(path, fmt, visit)
    offsets = list(keep.values())
    await asyncio.to_thread(_rewrite, path, scanner.body_start, offsets, fmt == "csv")
    return len(offsets)
