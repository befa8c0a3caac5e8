"""The opened input: a file of any input format (or stdin) in, InputRow values with checked ids out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterable
from dataclasses import dataclass
from typing import Any

from gembulk.errors import InputError
from gembulk.inputs.formats import PER_ROW_FIELDS, make_parser
from gembulk.inputs.ids import IdChecker, first_repeat, resolve_id_column
from gembulk.inputs.parser import Parser
from gembulk.inputs.stream import ByteSource
from gembulk.records import InputRow

STDIN_NAME = "<stdin>"


@dataclass(frozen=True)
class InputSpec:
    """Where the input is and how to read it."""

    path: str  # a path, or "-" for stdin
    format: str  # one of formats.FORMATS
    id_column: str | None = None  # None: the "id" column when present, else the data-row number
    display_name: str | None = None  # how messages name the input (e.g. "<stdin>" for a spooled copy)
    delimiter: str | None = None  # CSV/TSV field delimiter (None: TAB for TSV, told from the header for CSV)

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
    # JSONL and JSON: the required fields some row has (a row without one fails alone, as MISSING_VALUE)
    fields_seen: frozenset[str] = frozenset()


class InputSource:
    """An opened input: header known before any row is yielded."""

    def __init__(
        self,
        spec: InputSpec,
        source: ByteSource,
        parser: Parser,
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
        # An input that cannot be read a second time keeps its ids to find a repeat in one pass.
        self._ids = IdChecker(spec.name, id_column, unique=check_unique_ids, exact=spec.path == "-")
        self._check_repeats = check_unique_ids and id_column is not None and spec.path != "-"
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
        if self._check_repeats:
            repeated = self._ids.repeated_hashes()
            if repeated:
                await _refuse_repeat(self.spec, repeated)

    async def rows(self) -> AsyncIterator[InputRow]:
        """Every data row in order, streamed in one pass."""
        async for batch in self.row_batches():
            for row in batch:
                yield row

    async def sha256(self) -> str:
        """Hex digest of the input's stored bytes (read to the end for it when the rows did not)."""
        await self._source.drain()
        return self._source.hexdigest()

    async def aclose(self) -> None:
        await self._source.close()

    async def __aenter__(self) -> InputSource:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def _refuse_repeat(spec: InputSpec, repeated: set[int]) -> None:
    """Read the input again for the ids whose hash was seen twice, and refuse the first one repeated."""
    seen: dict[str, int] = {}
    async with open_input(spec, check_unique_ids=False) as source:
        async for batch in source.row_batches():
            first_repeat(spec.name, [(row.id, row.line) for row in batch if hash(row.id) in repeated], seen)


async def _open(spec: InputSpec, check_unique_ids: bool = True) -> InputSource:
    source = ByteSource(spec.path, spec.name)
    try:
        await source.open()
    except OSError as exc:
        raise InputError(f"{spec.name}: cannot open input: {exc.strerror or exc}") from None
    try:
        parser = make_parser(spec.format, source, spec.name, spec.delimiter)
        await parser.start()
        id_column = resolve_id_column(spec.name, spec.id_column, parser.columns, parser.header_line)
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

    `check_unique_ids=False` skips the repeated-id check, and the memory of 8 bytes per id it costs, on
    passes after a `scan_input` that already made it. With it, a repeated id is refused once the rows are
    exhausted (the input is then read again up to the repeat, to name both lines).
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


async def scan_input(spec: InputSpec, required_columns: Iterable[str] = ()) -> ScanResult:
    """Read the whole input once, validating every row, so bad input is refused before any request."""
    required = list(dict.fromkeys(required_columns))
    async with open_input(spec) as source:
        per_row = spec.format in PER_ROW_FIELDS  # other formats have the same fields on every row
        if not per_row:
            _check_header_has(source, required)
        unseen = set(required) if per_row else set()
        count = 0
        async for batch in source.row_batches():
            if unseen:
                unseen -= {c for c in unseen if any(c in row.fields for row in batch)}
            count += len(batch)
        seen = frozenset(required) - unseen if per_row else frozenset()
        return ScanResult(source.columns, source.id_column, count, await source.sha256(), seen)
