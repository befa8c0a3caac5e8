"""CSV and TSV inputs: the delimiter told from the header, the text cut at record boundaries, each block
parsed by the csv module."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator

from gembulk.errors import InputError
from gembulk.inputs.parser import Batch

# The csv module refuses fields over 128 KiB by default; a prompt column holding a long document is
# normal input here. The limit is process-wide, so it is only ever raised, never lowered.
csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))

Records = tuple[list[int], list[list[str]]]  # CSV records before the header gives them names

# What spreadsheets export: `;` where the comma is the decimal mark, tab and pipe from databases.
DELIMITERS = (",", ";", "\t", "|")
_QUOTED = re.compile(r'"[^"]*"')


def detect_delimiter(header: str) -> str:
    """The one of , ; TAB | found most often in the header line outside quotes (a tie goes to the
    earlier one), or , when none is: a one-column CSV."""
    bare = _QUOTED.sub("", header)
    count, _, delimiter = max((bare.count(d), -i, d) for i, d in enumerate(DELIMITERS))
    return delimiter if count else ","


def delimiter_name(delimiter: str) -> str:
    return {"\t": "TAB", " ": "space"}.get(delimiter, delimiter)


async def _first_line(chunks: AsyncIterator[str]) -> tuple[str, AsyncIterator[str]]:
    """The first non-blank line of the text, and the text again from its start."""
    seen: list[str] = []
    line = ""
    async for text in chunks:
        seen.append(text)
        if "\n" in text:
            lines = "".join(seen).split("\n")
            complete = [candidate for candidate in lines[:-1] if candidate.strip()]
            if complete:
                line = complete[0]
                break
    else:
        line = next((candidate for candidate in "".join(seen).split("\n") if candidate.strip()), "")

    async def again() -> AsyncIterator[str]:
        for text in seen:
            yield text
        async for text in chunks:
            yield text

    return line, again()


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


class CsvParser:
    """`delimiter` None: told from the header line (detect_delimiter)."""

    def __init__(self, chunks: AsyncIterator[str], name: str, delimiter: str | None) -> None:
        self._chunks = chunks
        self._records: AsyncIterator[Records] | None = None
        self._name = name
        self._delimiter = delimiter
        self._detected = False
        self._pending: Records = ([], [])
        self.columns: tuple[str, ...] = ()
        self.header_line = 1

    async def start(self) -> None:
        chunks = self._chunks
        delimiter = self._delimiter
        if delimiter is None:
            header, chunks = await _first_line(chunks)
            delimiter = detect_delimiter(header)
            self._delimiter, self._detected = delimiter, delimiter != ","
        self._records = _csv_records(chunks, self._name, delimiter)
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
                where, hint = f"{self._name}:{line}", self._split_hint()
                raise InputError(f"{where}: row has {len(record)} fields, header has {width}{hint}")
        # Lengths are checked above, so a plain zip cannot drop a field.
        return starts, [dict(zip(columns, record)) for record in values]  # noqa: B905

    def _split_hint(self) -> str:
        if not self._detected:
            return ""
        name = delimiter_name(self._delimiter or ",")
        return f" (fields split on '{name}', the header's delimiter; --delimiter sets another)"

    async def batches(self) -> AsyncIterator[Batch]:
        assert self._records is not None, "start() first"
        if self._pending[0]:
            yield self._to_fields(self._pending)
        self._pending = ([], [])
        async for records in self._records:
            yield self._to_fields(records)
