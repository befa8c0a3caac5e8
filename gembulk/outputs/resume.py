"""Reading an existing output back: each record checked, a torn tail found and cut, the resume state."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiofiles
import aiofiles.os

from gembulk.errors import InputError
from gembulk.outputs.formats import CSV_BASE_COLUMNS, ERROR_COLUMNS

CHUNK_SIZE = 256 * 1024  # read size when scanning an existing output


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


async def file_lines(path: str) -> AsyncIterator[list[Line]]:
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


def csv_fields(data: bytes) -> list[str]:
    try:
        return next(csv.reader([data.decode()]), [])
    except (csv.Error, UnicodeDecodeError):
        raise _Damaged from None


class OutputScanner:
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
            header = csv_fields(data)
        except _Damaged:
            header = []
        if tuple(header[: len(CSV_BASE_COLUMNS)]) != CSV_BASE_COLUMNS:
            raise self._error(number, f"the CSV header does not start with {','.join(CSV_BASE_COLUMNS)}")
        self._header = header

    def _csv_record(self, data: bytes) -> tuple[RecordKey, bool]:
        assert self._header is not None
        fields = csv_fields(data)
        if len(fields) != len(self._header) or not fields[0]:
            raise _Damaged
        row = dict(zip(self._header, fields, strict=True))
        return (row["id"], row.get("model", "")), not any(row[c] for c in ERROR_COLUMNS)


async def scan_output(
    path: str, fmt: str, visit: Callable[[RecordKey, bool, int], None]
) -> tuple[OutputScanner, int | None]:
    scanner = OutputScanner(path, fmt, visit)
    async for batch in file_lines(path):
        for offset, number, data in batch:
            scanner.line(offset, number, data)
    return scanner, scanner.finish()


async def read_csv_header(path: str) -> tuple[str, ...] | None:
    """The first record of a CSV file, or None when the file has none complete."""
    parts: list[bytes] = []
    odd = False
    async with contextlib.aclosing(file_lines(path)) as batches:
        async for batch in batches:
            for _, _, data in batch:
                parts.append(data)
                odd ^= bool(data.count(b'"') & 1)
                if not odd and data.endswith(b"\n"):
                    try:
                        return tuple(csv_fields(b"".join(parts)))
                    except _Damaged:
                        return None
    return None


async def has_content(path: str) -> bool:
    try:
        return (await aiofiles.os.stat(path)).st_size > 0
    except FileNotFoundError:
        return False


def _truncate(path: str, size: int) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(size)
        handle.flush()
        os.fsync(handle.fileno())


def written_as(head: bytes) -> str | None:
    """The output format a file's first bytes show: "jsonl" (a JSON object), "csv" (gembulk's CSV header),
    or None when they show neither."""
    if head.lstrip()[:1] == b"{":
        return "jsonl"
    header = ",".join(CSV_BASE_COLUMNS).encode()
    if head.startswith(header) or (len(head) < len(header) and header.startswith(head) and head):
        return "csv"
    return None


async def check_written_format(path: str, fmt: str) -> None:
    """An output gembulk wrote in the other format is refused with the way out, before any record is
    read as a record of this format (which would only say "not a gembulk record")."""
    async with aiofiles.open(path, "rb") as handle:
        head = await handle.read(256)
    written = written_as(head)
    if written is not None and written != fmt:
        raise InputError(f"{path} was written as {written}; pass --output-format {written} or a new -o")


async def load_existing(path: str, fmt: str) -> ExistingOutput | None:
    """Resume state of an output; a torn last record is cut off the file. None if there is no output."""
    if not await has_content(path):
        return None
    await check_written_format(path, fmt)
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

    scanner, torn_at = await scan_output(path, fmt, visit)
    if torn_at is not None:
        await asyncio.to_thread(_truncate, path, torn_at)
    return ExistingOutput(frozenset(done), frozenset(failed), scanner.records, torn_at is not None, repeated)
