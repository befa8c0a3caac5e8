"""Reading an output's records back: lines (plain or decompressed), each record checked, a torn tail found."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiofiles
import aiofiles.os

from gembulk.errors import InputError
from gembulk.outputs.compression import complete_end, plain_chunks
from gembulk.outputs.formats import CSV_BASE_COLUMNS, ERROR_COLUMNS, FINGERPRINT_COLUMN

CHUNK_SIZE = 256 * 1024  # read size when scanning an existing output

# A record is one answer of one model to one row: with several models (-m a -m b) an id has a record
# per model, so resume and compaction key records by (id, model).
Visit = Callable[[str, str, "str | None", bool, int], None]  # id, model, fingerprint, ok, offset

Line = tuple[int, int, bytes]  # byte offset, 1-based line number, the line with its b"\n" (if any)


async def file_lines(path: str) -> AsyncIterator[list[Line]]:
    """Batches of physical lines; only the very last one may lack its newline."""
    async with aiofiles.open(path, "rb") as handle:
        async for batch in lines_of(_chunks(handle)):
            yield batch


async def _chunks(handle: Any) -> AsyncIterator[bytes]:
    while chunk := await handle.read(CHUNK_SIZE):
        yield chunk


async def compressed_lines(path: str, compression: str, end: int) -> AsyncIterator[list[Line]]:
    """Batches of the physical lines in the first `end` bytes of a compressed output (its complete
    members), decompressed in a worker thread; offsets are offsets in the plain bytes."""
    pieces = plain_chunks(path, compression, end)
    done = object()

    async def plain() -> AsyncIterator[bytes]:
        while (piece := await asyncio.to_thread(next, pieces, done)) is not done:
            yield piece  # type: ignore[misc]

    async for batch in lines_of(plain()):
        yield batch


async def lines_of(chunks: AsyncIterator[bytes]) -> AsyncIterator[list[Line]]:
    """Chunks of bytes cut into batches of physical lines; only the very last one may lack its newline."""
    pieces: list[bytes] = []  # start of a line longer than a chunk
    base = 0  # offset of pieces[0]
    number = 0
    async for chunk in chunks:
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


Scanned = tuple[str, str, "str | None", bool]  # id, model, fingerprint, ok


def _jsonl_record(data: bytes) -> Scanned:
    try:
        value = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _Damaged from None
    if not isinstance(value, dict) or "error" not in value:
        raise _NotARecord("expected a JSON object with 'id' and 'error'")
    record_id, error = value.get("id"), value["error"]
    if not isinstance(record_id, str) or not record_id or not (error is None or isinstance(error, dict)):
        raise _NotARecord("'id' must be a non-empty string and 'error' null or an object")
    fingerprint = value.get("fingerprint")
    if not isinstance(fingerprint, str) or not fingerprint:
        fingerprint = None  # written by an earlier version: it never matches, the row is sent once more
    return record_id, str(value.get("model") or ""), fingerprint, error is None


def csv_fields(data: bytes) -> list[str]:
    try:
        return next(csv.reader([data.decode()]), [])
    except (csv.Error, UnicodeDecodeError):
        raise _Damaged from None


class OutputScanner:
    """Validates an existing output record by record and finds where a torn tail starts."""

    def __init__(self, path: str, fmt: str, visit: Visit) -> None:
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
            record_id, model, fingerprint, ok = self._csv_record(data) if self._csv else _jsonl_record(data)
        except _Damaged:
            self._suspect = (offset, number, data)
            return
        except _NotARecord as exc:
            raise self._error(number, str(exc)) from None
        self.records += 1
        self._visit(record_id, model, fingerprint, ok, offset)

    def _take_header(self, number: int, data: bytes) -> None:
        try:
            header = csv_fields(data)
        except _Damaged:
            header = []
        if tuple(header[: len(CSV_BASE_COLUMNS)]) != CSV_BASE_COLUMNS:
            raise self._error(number, f"the CSV header does not start with {','.join(CSV_BASE_COLUMNS)}")
        self._header = header

    @property
    def header(self) -> tuple[str, ...] | None:
        return None if self._header is None else tuple(self._header)

    def _csv_record(self, data: bytes) -> Scanned:
        assert self._header is not None
        fields = csv_fields(data)
        if len(fields) != len(self._header) or not fields[0]:
            raise _Damaged
        row = dict(zip(self._header, fields, strict=True))
        ok = not any(row[c] for c in ERROR_COLUMNS)
        return row["id"], row.get("model", ""), row.get(FINGERPRINT_COLUMN) or None, ok


async def scan_output(
    path: str, fmt: str, visit: Visit, compression: str | None = None, end: int | None = None
) -> tuple[OutputScanner, int | None]:
    """Visit every record; returns the scanner and where a torn tail starts (None: the file ends
    cleanly). A compressed output is read up to `end`, where its complete members end: what follows is
    its torn tail, and a complete member always ends with a complete record."""
    scanner = OutputScanner(path, fmt, visit)
    if compression is None:
        batches = file_lines(path)
    else:
        if end is None:
            end = await asyncio.to_thread(complete_end, path, compression)
        batches = compressed_lines(path, compression, end)
    async with contextlib.aclosing(batches):
        async for batch in batches:
            for offset, number, data in batch:
                scanner.line(offset, number, data)
    torn_at = scanner.finish()
    if compression is not None and torn_at is not None:
        raise InputError(f"{path}: a {compression} member ends inside a record; not an output gembulk wrote")
    return scanner, torn_at


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


def written_as(head: bytes) -> str | None:
    """The output format a file's first bytes show: "jsonl" (a JSON object), "csv" (gembulk's CSV header),
    or None when they show neither."""
    if head.lstrip()[:1] == b"{":
        return "jsonl"
    header = ",".join(CSV_BASE_COLUMNS).encode()
    if head.startswith(header) or (len(head) < len(header) and header.startswith(head) and head):
        return "csv"
    return None
