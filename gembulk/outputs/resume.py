"""Reading an existing output back: each record checked, a torn tail found, what a re-run need not send."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiofiles
import aiofiles.os

from gembulk.errors import InputError
from gembulk.outputs.formats import CSV_BASE_COLUMNS, ERROR_COLUMNS, FINGERPRINT_COLUMN

CHUNK_SIZE = 256 * 1024  # read size when scanning an existing output


# A record is one answer of one model to one row: with several models (-m a -m b) an id has a record
# per model, so resume and compaction key records by (id, model). Keys and fingerprints are held as
# 60-bit digests, not strings: a resume of a million rows keeps two sets of small ints.
Visit = Callable[[str, str, "str | None", bool, int], None]  # id, model, fingerprint, ok, offset


def _digest(text: str) -> int:
    raw = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(raw, "little") >> 4  # 60 bits: an int of 32 bytes instead of 48


def record_key(record_id: str, model: str) -> int:
    """The digest that stands for (id, model): one record per key stays after compaction."""
    return _digest(f"{record_id}\0{model}")


def success_key(record_id: str, model: str, fingerprint: str) -> int:
    """The digest of a success record answering the request with this fingerprint."""
    return _digest(f"{record_id}\0{model}\0{fingerprint}")


@dataclass(frozen=True)
class ExistingOutput:
    """What earlier (possibly crashed) runs left in the output file, read without changing it."""

    succeeded: set[int]  # success_key of every success record that carries a fingerprint
    keys: set[int]  # record_key of every record
    repeated: set[int]  # record_key of the keys with more than one record
    records: int  # complete records found
    end: int  # offset where the complete records end: a torn tail after it is cut before appending
    torn: bool  # the file ends in a torn (partial) last record, to be dropped
    header: tuple[str, ...] | None = None  # a CSV output's header

    def has_success(self, record_id: str, model: str, fingerprint: str) -> bool:
        return success_key(record_id, model, fingerprint) in self.succeeded


class Resume:
    """What this run makes of the existing output: which requests are done, and what compaction keeps.

    A request is done when a success record of the same (id, model) carries its fingerprint; any other
    request is sent and its record supersedes the old ones. The request passes report here (`counting`
    on the first pass only), so the end of the run knows whether a compaction is due and how many keys
    of the file this job left alone (rows deleted from the input, another model or shard).
    """

    def __init__(self, existing: ExistingOutput | None) -> None:
        self.existing = existing
        self.current: set[int] = set()  # success_key of the records resumed from, for repeated keys only
        self._superseding = False  # this run writes a key the file already holds
        self._file_keys = len(existing.keys) if existing is not None else 0
        self._job_keys_present = 0

    def done(self, record_id: str, model: str, fingerprint: str, *, counting: bool) -> bool:
        existing = self.existing
        if existing is None:
            return False
        digest = success_key(record_id, model, fingerprint)
        if digest not in existing.succeeded:
            return False
        if existing.repeated and record_key(record_id, model) in existing.repeated:
            self.current.add(digest)  # compaction must keep this one, whatever followed it
        self._job_keys_present += counting
        return True

    def sending(self, record_id: str, model: str, *, counting: bool) -> None:
        """This run writes a record for (id, model)."""
        if self.existing is not None and record_key(record_id, model) in self.existing.keys:
            self._superseding = True
            self._job_keys_present += counting

    @property
    def needs_compaction(self) -> bool:
        return self.existing is not None and bool(self.existing.repeated or self._superseding)

    @property
    def left_alone(self) -> int:
        """Keys of the file that are not part of this job (after a complete first pass)."""
        return self._file_keys - self._job_keys_present

    def release(self) -> None:
        """The request passes are over: drop the digests (about 140 MB at a million rows) before a
        compaction needs memory of its own. `current`, `needs_compaction` and `left_alone` stay."""
        if self.existing is not None:
            self.existing.keys.clear()
            self.existing.succeeded.clear()


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


async def scan_output(path: str, fmt: str, visit: Visit) -> tuple[OutputScanner, int | None]:
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
    """What an output holds, read without changing it (a torn tail is cut by the writer, under the
    lock, when it appends). None if there is no output or it is empty."""
    if not await has_content(path):
        return None
    await check_written_format(path, fmt)
    succeeded: set[int] = set()
    keys: set[int] = set()
    repeated: set[int] = set()

    def visit(record_id: str, model: str, fingerprint: str | None, ok: bool, offset: int) -> None:
        key = record_key(record_id, model)
        if key in keys:
            repeated.add(key)
        else:
            keys.add(key)
        if ok and fingerprint is not None:
            succeeded.add(success_key(record_id, model, fingerprint))

    scanner, torn_at = await scan_output(path, fmt, visit)
    end = torn_at if torn_at is not None else (await aiofiles.os.stat(path)).st_size
    return ExistingOutput(
        succeeded, keys, repeated, scanner.records, end, torn_at is not None, scanner.header
    )


async def count_outcomes(path: str, fmt: str) -> tuple[int, int]:
    """(keys with a success record, keys with failures only) of an output: what a finished job holds."""
    succeeded: set[int] = set()
    failed: set[int] = set()

    def visit(record_id: str, model: str, fingerprint: str | None, ok: bool, offset: int) -> None:
        key = record_key(record_id, model)
        if ok:
            succeeded.add(key)
            failed.discard(key)
        elif key not in succeeded:
            failed.add(key)

    if await has_content(path):
        await scan_output(path, fmt, visit)
    return len(succeeded), len(failed)
