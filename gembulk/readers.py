"""Streaming input readers: CSV/TSV/JSONL/TXT files or stdin in, InputRow values with checked ids out."""

from __future__ import annotations

import asyncio
import codecs
import csv
import hashlib
import io
import json
import os
import sys
import tempfile
from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, BinaryIO, Protocol

import aiofiles

from gembulk.errors import InputError, UsageError
from gembulk.records import InputRow

# Read size per thread hop; tests shrink it to force chunk boundaries inside records.
CHUNK_SIZE = 256 * 1024

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "txt")
STDIN_NAME = "<stdin>"

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
_ALIASES = {"ndjson": "jsonl"}
_DEFAULT_ID_COLUMN = "id"

# The csv module refuses fields over 128 KiB by default; a prompt column holding a long document is
# normal input here. The limit is process-wide, so it is only ever raised, never lowered.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))

# Rows travel as parallel lists (start lines, field dicts) rather than a tuple per row: at a
# million rows the per-row allocations are what a scan costs.
Batch = tuple[list[int], list[dict[str, Any]]]
Records = tuple[list[int], list[list[str]]]  # CSV records before the header gives them names


def detect_format(path: str, explicit: str | None) -> str:
    """The input format: the explicit one, else from the file extension; stdin defaults to jsonl."""
    if explicit is not None:
        fmt = _ALIASES.get(explicit.lower(), explicit.lower())
        if fmt not in FORMATS:
            raise UsageError(f"unknown input format '{explicit}' (accepted: {', '.join(FORMATS)})")
        return fmt
    if path == "-":
        return "jsonl"
    suffix = PurePath(path).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    what = f"extension '{suffix}'" if suffix else "no extension"
    raise InputError(
        f"{path}: cannot tell the input format ({what}); accepted extensions: "
        f"{', '.join(_EXTENSIONS)}; or name it with --input-format {'|'.join(FORMATS)}"
    )


@dataclass(frozen=True)
class InputSpec:
    """Where the input is and how to read it."""

    path: str  # a path, or "-" for stdin
    format: str  # csv|tsv|jsonl|txt
    id_column: str | None = None  # None: the "id" column when present, else the data-row number
    display_name: str | None = None  # how messages name the input (e.g. "<stdin>" for a spooled copy)

    @property
    def name(self) -> str:
        if self.display_name is not None:
            return self.display_name
        return STDIN_NAME if self.path == "-" else self.path


@dataclass(frozen=True)
class ScanResult:
    """What a full validating pass over the input found."""

    columns: tuple[str, ...]
    id_column: str | None
    row_count: int
    sha256: str  # hex digest of the raw input bytes


# ---------------------------------------------------------------------------------------------------
# Bytes: one thread hop per chunk, hashed on the way through.


class _ByteSource:
    """Raw chunks of a file (via aiofiles) or of stdin (via a worker thread per chunk)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: Any = None
        self._stdin: BinaryIO | None = None
        self._hash = hashlib.sha256()

    async def open(self) -> None:
        if self._path == "-":
            self._stdin = sys.stdin.buffer
        else:
            self._file = await aiofiles.open(self._path, "rb")

    async def read(self) -> bytes:
        size = CHUNK_SIZE
        if self._stdin is not None:
            # read1 returns what a pipe has instead of blocking until a full chunk arrives.
            read = getattr(self._stdin, "read1", self._stdin.read)
            chunk = await asyncio.to_thread(read, size)
        else:
            chunk = await self._file.read(size)
        self._hash.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
            self._file = None


def _utf8_error(name: str, newlines_before: int, exc: UnicodeDecodeError) -> InputError:
    line = newlines_before + exc.object[: exc.start].count(b"\n") + 1
    bad = exc.object[exc.start : exc.start + 1].hex()
    return InputError(f"{name}:{line}: invalid UTF-8 (byte 0x{bad}); the input must be UTF-8 text")


async def _text_chunks(source: _ByteSource, name: str) -> AsyncIterator[str]:
    """UTF-8 text of the input in chunks, without a leading BOM."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    at_start = True
    while chunk := await source.read():
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _utf8_error(name, newlines, exc) from None
        newlines += chunk.count(b"\n")
        if at_start and text:
            text = text.removeprefix("\ufeff")
            at_start = False
        if text:
            yield text
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _utf8_error(name, newlines, exc) from None


# ---------------------------------------------------------------------------------------------------
# CSV/TSV: cut the text at record boundaries, let the csv module parse each block.


def _last_boundary(text: str, quotes_before: int) -> int:
    """Index of the last newline in text that ends a record, or -1.

    A newline ends a record iff an even number of quote characters precede it since the last
    boundary (quotes_before counts those in the carried text). Walking back from the end costs only
    the last few lines in the usual case.
    """
    total = quotes_before + text.count('"')
    quotes_after = 0
    end = len(text)
    while (newline := text.rfind("\n", 0, end)) >= 0:
        quotes_after += text.count('"', newline, end)
        if (total - quotes_after) % 2 == 0:
            return newline
        end = newline
    return -1


def _parse_csv_block(block: str, lines_before: int, name: str, delimiter: str) -> tuple[Records, int]:
    """Records of a block of whole records with their start lines; blank lines are dropped."""
    # newline="\n" splits physical lines on LF only, so reader.line_num counts what people count.
    reader = csv.reader(io.StringIO(block, newline="\n"), delimiter=delimiter)
    starts: list[int] = []
    records: list[list[str]] = []
    consumed = 0
    try:
        for record in reader:
            if record:
                starts.append(lines_before + consumed + 1)
                records.append(record)
            consumed = reader.line_num
    except csv.Error as exc:
        reason = str(exc)
        if "new-line character" in reason:
            reason = "a carriage return (\\r) outside quotes; lines must end in \\n or \\r\\n"
        raise InputError(f"{name}:{lines_before + consumed + 1}: malformed CSV: {reason}") from None
    return (starts, records), lines_before + reader.line_num


async def _csv_records(chunks: AsyncIterator[str], name: str, delimiter: str) -> AsyncIterator[Records]:
    """Batches of (start line, fields) for every non-blank record, header included."""
    carry: list[str] = []  # text after the last record boundary
    carry_quotes = 0
    lines = 0
    async for text in chunks:
        cut = _last_boundary(text, carry_quotes)
        if cut < 0:
            carry.append(text)
            carry_quotes += text.count('"')
            continue
        block = "".join(carry) + text[: cut + 1]
        rest = text[cut + 1 :]
        carry = [rest] if rest else []
        carry_quotes = rest.count('"')
        records, lines = _parse_csv_block(block, lines, name, delimiter)
        if records[0]:
            yield records
    if not carry:
        return
    if carry_quotes % 2:
        raise InputError(
            f"{name}:{lines + 1}: unterminated quoted field: a '\"' opens a field that never closes"
        )
    records, lines = _parse_csv_block("".join(carry), lines, name, delimiter)
    if records[0]:
        yield records


# ---------------------------------------------------------------------------------------------------
# Line formats: JSONL and TXT.


async def _lines(chunks: AsyncIterator[str]) -> AsyncIterator[list[tuple[int, str]]]:
    """Batches of (line number, line without its \\n) for every physical line."""
    pending: list[str] = []  # pieces of a line longer than a chunk
    number = 0
    async for text in chunks:
        if "\n" not in text:
            pending.append(text)
            continue
        parts = ("".join(pending) + text if pending else text).split("\n")
        tail = parts.pop()
        pending = [tail] if tail else []
        batch = list(enumerate(parts, start=number + 1))
        number += len(parts)
        yield batch
    if pending:
        yield [(number + 1, "".join(pending))]


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def _parse_json_line(name: str, number: int, line: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{number}: not a JSON object: {exc.msg} (column {exc.colno})") from None
    if not isinstance(value, dict):
        raise InputError(f"{name}:{number}: not a JSON object: found {_json_kind(value)}")
    return value


async def _jsonl_rows(lines: AsyncIterator[list[tuple[int, str]]], name: str) -> AsyncIterator[Batch]:
    async for batch in lines:
        numbers = [n for n, line in batch if line.strip()]
        if numbers:
            yield numbers, [_parse_json_line(name, n, line) for n, line in batch if line.strip()]


async def _txt_rows(lines: AsyncIterator[list[tuple[int, str]]]) -> AsyncIterator[Batch]:
    async for batch in lines:
        numbers: list[int] = []
        fields: list[dict[str, Any]] = []
        for number, line in batch:
            text = line.removesuffix("\r")
            if text.strip():
                numbers.append(number)
                fields.append({"prompt": text})
        if numbers:
            yield numbers, fields


# ---------------------------------------------------------------------------------------------------
# Parsers: find the columns first, then stream (line, fields) batches.


class _Parser(Protocol):
    columns: tuple[str, ...]
    header_line: int

    async def start(self) -> None: ...

    def batches(self) -> AsyncIterator[Batch]: ...


class _CsvParser:
    def __init__(self, chunks: AsyncIterator[str], name: str, delimiter: str) -> None:
        self._records = _csv_records(chunks, name, delimiter)
        self._name = name
        self._pending: Records = ([], [])
        self.columns: tuple[str, ...] = ()
        self.header_line = 1

    async def start(self) -> None:
        batch = await anext(self._records, None)
        if batch is None:
            raise InputError(f"{self._name}:1: empty input: a CSV/TSV input needs a header row")
        starts, records = batch
        self.header_line = starts[0]
        self._pending = (starts[1:], records[1:])
        self.columns = self._check_header(records[0])

    def _check_header(self, header: list[str]) -> tuple[str, ...]:
        where = f"{self._name}:{self.header_line}"
        seen: set[str] = set()
        for position, column in enumerate(header, start=1):
            if not column.strip():
                raise InputError(f"{where}: header column {position} has an empty name")
            if column in seen:
                raise InputError(f"{where}: duplicate column name '{column}' in the header")
            seen.add(column)
        return tuple(header)

    def _to_fields(self, records: Records) -> Batch:
        starts, values = records
        columns = self.columns
        width = len(columns)
        for line, record in zip(starts, values, strict=True):
            if len(record) != width:
                raise InputError(f"{self._name}:{line}: row has {len(record)} fields, header has {width}")
        # Lengths are checked above, so a plain zip cannot drop a field.
        return starts, [dict(zip(columns, record)) for record in values]  # noqa: B905

    async def batches(self) -> AsyncIterator[Batch]:
        if self._pending[0]:
            yield self._to_fields(self._pending)
        self._pending = ([], [])
        async for records in self._records:
            yield self._to_fields(records)


class _JsonlParser:
    """Columns are the keys of the first object, so that object is read before any row is handed out."""

    def __init__(self, chunks: AsyncIterator[str], name: str) -> None:
        self._rows = _jsonl_rows(_lines(chunks), name)
        self._pending: Batch = ([], [])
        self.columns: tuple[str, ...] = ()
        self.header_line = 1

    async def start(self) -> None:
        batch = await anext(self._rows, None)
        if batch is not None:
            self._pending = batch
            self.header_line = batch[0][0]
            self.columns = tuple(batch[1][0])

    async def batches(self) -> AsyncIterator[Batch]:
        if self._pending[0]:
            yield self._pending
        self._pending = ([], [])
        async for batch in self._rows:
            yield batch


class _TxtParser:
    def __init__(self, chunks: AsyncIterator[str]) -> None:
        self._rows = _txt_rows(_lines(chunks))
        self.columns: tuple[str, ...] = ("prompt",)
        self.header_line = 1

    async def start(self) -> None:
        return None

    def batches(self) -> AsyncIterator[Batch]:
        return self._rows


def _make_parser(fmt: str, chunks: AsyncIterator[str], name: str) -> _Parser:
    if fmt == "csv":
        return _CsvParser(chunks, name, ",")
    if fmt == "tsv":
        return _CsvParser(chunks, name, "\t")
    if fmt == "jsonl":
        return _JsonlParser(chunks, name)
    if fmt == "txt":
        return _TxtParser(chunks)
    raise UsageError(f"unknown input format '{fmt}' (accepted: {', '.join(FORMATS)})")


# ---------------------------------------------------------------------------------------------------
# Ids.


def _id_text(value: Any) -> str | None:
    """The id a field value stands for; None when the value cannot be an id."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)


class _IdChecker:
    """Gives each row its id and refuses missing, malformed and repeated ones."""

    def __init__(self, name: str, column: str | None, *, unique: bool = True) -> None:
        self._name = name
        self._column = column
        self._unique = unique  # False: a pass after a validating scan, which already refused repeats
        self._first_line: dict[str, int] = {}  # only ids are kept, never rows

    def id_for(self, line: int, index: int, fields: dict[str, Any]) -> str:
        if self._column is None:
            return str(index)  # row numbers cannot repeat, so they need no bookkeeping
        row_id = self._explicit_id(line, fields)
        if not self._unique:
            return row_id
        first = self._first_line.setdefault(row_id, line)
        if first != line:
            raise InputError(f"{self._name}:{line}: duplicate id '{row_id}' (first at line {first})")
        return row_id

    def _explicit_id(self, line: int, fields: dict[str, Any]) -> str:
        column = self._column
        assert column is not None
        if column not in fields:
            raise InputError(f"{self._name}:{line}: row has no id: field '{column}' is missing")
        value = fields[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InputError(f"{self._name}:{line}: row has no id: '{column}' is empty")
        row_id = _id_text(value)
        if row_id is None:
            raise InputError(
                f"{self._name}:{line}: id in '{column}' must be a string or a number, not {_json_kind(value)}"
            )
        return row_id


def _resolve_id_column(spec: InputSpec, columns: tuple[str, ...], header_line: int) -> str | None:
    if spec.id_column is None:
        return _DEFAULT_ID_COLUMN if _DEFAULT_ID_COLUMN in columns else None
    # An input without rows (columns unknown) has nothing to refuse.
    if columns and spec.id_column not in columns:
        raise InputError(
            f"{spec.name}:{header_line}: id column '{spec.id_column}' is not in the input "
            f"(columns: {', '.join(columns)})"
        )
    return spec.id_column


# ---------------------------------------------------------------------------------------------------
# The opened input.


class InputSource:
    """An opened input: header known before any row is yielded."""

    def __init__(
        self,
        spec: InputSpec,
        source: _ByteSource,
        parser: _Parser,
        id_column: str | None,
        *,
        check_unique_ids: bool = True,
    ) -> None:
        self.spec = spec
        self.columns: tuple[str, ...] = parser.columns
        self.id_column = id_column
        self.header_line = parser.header_line
        self._source = source
        self._parser = parser
        self._ids = _IdChecker(spec.name, id_column, unique=check_unique_ids)
        self._started = False

    async def row_batches(self) -> AsyncIterator[list[InputRow]]:
        """Rows in the batches they were parsed in (one pass); cheaper than rows() for bulk scans."""
        if self._started:
            raise RuntimeError(f"{self.spec.name} can be read only once")
        self._started = True
        index = 0
        id_for = self._ids.id_for
        async for lines, field_dicts in self._parser.batches():
            rows: list[InputRow] = []
            for line, fields in zip(lines, field_dicts, strict=True):
                index += 1
                rows.append(InputRow(id_for(line, index, fields), fields, line, index))
            yield rows

    async def rows(self) -> AsyncIterator[InputRow]:
        """Every data row in order, streamed in one pass."""
        async for batch in self.row_batches():
            for row in batch:
                yield row

    def sha256(self) -> str:
        """Hex digest of the bytes read so far (the whole input once the rows are exhausted)."""
        return self._source.hexdigest()

    async def aclose(self) -> None:
        await self._source.close()

    async def __aenter__(self) -> InputSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _open(spec: InputSpec, check_unique_ids: bool = True) -> InputSource:
    source = _ByteSource(spec.path)
    try:
        await source.open()
    except OSError as exc:
        raise InputError(f"{spec.name}: cannot open input: {exc.strerror or exc}") from None
    try:
        parser = _make_parser(spec.format, _text_chunks(source, spec.name), spec.name)
        await parser.start()
        id_column = _resolve_id_column(spec, parser.columns, parser.header_line)
    except BaseException:
        await source.close()
        raise
    return InputSource(spec, source, parser, id_column, check_unique_ids=check_unique_ids)


class _OpeningInput:
    """What open_input returns: await it for an InputSource, or use it in `async with`."""

    def __init__(self, spec: InputSpec, check_unique_ids: bool) -> None:
        self._spec = spec
        self._check_unique_ids = check_unique_ids
        self._source: InputSource | None = None

    def __await__(self) -> Generator[Any, None, InputSource]:
        return _open(self._spec, self._check_unique_ids).__await__()

    async def __aenter__(self) -> InputSource:
        self._source = await _open(self._spec, self._check_unique_ids)
        return self._source

    async def __aexit__(self, *exc_info: object) -> None:
        if self._source is not None:
            await self._source.aclose()


def open_input(spec: InputSpec, *, check_unique_ids: bool = True) -> _OpeningInput:
    """Open an input and read its header: `src = await open_input(spec)` or `async with open_input(spec)`.

    `check_unique_ids=False` skips the repeated-id check, and the memory of one string per id it costs,
    on passes after a `scan_input` that already made it.
    """
    return _OpeningInput(spec, check_unique_ids)


# ---------------------------------------------------------------------------------------------------
# Whole-input passes.


def _check_header_has(source: InputSource, required: list[str]) -> None:
    for column in required:
        if column not in source.columns:
            raise InputError(
                f"{source.spec.name}:{source.header_line}: no column '{column}' used by the template "
                f"(columns: {', '.join(source.columns)})"
            )


def _check_row_has(name: str, rows: list[InputRow], required: list[str]) -> None:
    for row in rows:
        for column in required:
            if column not in row.fields:
                raise InputError(f"{name}:{row.line}: row has no field '{column}' used by the template")


async def scan_input(spec: InputSpec, required_columns: Iterable[str] = ()) -> ScanResult:
    """Read the whole input once, validating every row, so bad input is refused before any request."""
    required = list(dict.fromkeys(required_columns))
    async with open_input(spec) as source:
        per_row = spec.format == "jsonl"  # other formats have the same fields on every row
        if not per_row:
            _check_header_has(source, required)
        count = 0
        async for batch in source.row_batches():
            if per_row and required:
                _check_row_has(spec.name, batch, required)
            count += len(batch)
        return ScanResult(source.columns, source.id_column, count, source.sha256())


def _copy_chunk(src: BinaryIO, dst: BinaryIO) -> int:
    read = getattr(src, "read1", src.read)
    chunk = read(CHUNK_SIZE)
    dst.write(chunk)
    return len(chunk)


async def spool_stdin(tmp_dir: str | None = None) -> str:
    """Copy stdin to a temporary file and return its path (the caller deletes it).

    Stdin can be read once, but the tool needs a validating pass before the real one. One thread hop
    per chunk keeps memory flat and lets a Ctrl-C land between chunks.
    """
    fd, path = tempfile.mkstemp(prefix="gembulk-stdin-", suffix=".gembulk-tmp", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as dst:
            src = sys.stdin.buffer
            while await asyncio.to_thread(_copy_chunk, src, dst):
                pass
    except BaseException:
        os.unlink(path)
        raise
    return path
