"""JSON inputs (.json): an array of row objects, or objects one after another (JSON lines, jq's output),
streamed object by object; the columns are the keys of the first object."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any, NoReturn

from gembulk.errors import InputError
from gembulk.inputs.jsonl import json_kind
from gembulk.inputs.parser import Batch

_DECODER = json.JSONDecoder()
_NON_BLANK = re.compile(r"[^ \t\r\n]")
# A decode error this close to the end of the text read so far may be an object cut by the chunk boundary.
_NEAR_END = 64


def _incomplete(exc: json.JSONDecodeError, text: str) -> bool:
    """Whether more text could still make this object valid (otherwise it is wrong as it stands)."""
    return exc.msg.startswith("Unterminated string") or exc.pos >= len(text) - _NEAR_END


class _Reader:
    """Values of a JSON text read chunk by chunk: the text is kept only from the current value on."""

    def __init__(self, chunks: AsyncIterator[str], name: str) -> None:
        self._chunks = chunks
        self._name = name
        self.text = ""
        self.pos = 0
        self.line = 1  # the line at self.pos
        self._column0 = 0  # the 0-based column of text[0] (the text before it has been dropped)
        self.ended = False

    async def _more(self, at_least: int = 1) -> bool:
        """Read until at_least more characters arrived (doubling the wait for a large value keeps the
        retries of one value linear in its size); False at the end of the input."""
        newline = self.text.rfind("\n", 0, self.pos)
        self._column0 = self.pos - newline - 1 if newline >= 0 else self._column0 + self.pos
        self.text = self.text[self.pos :]
        self.pos = 0
        got = 0
        pieces = [self.text]
        while got < at_least:
            chunk = await anext(self._chunks, None)
            if chunk is None:
                self.ended = True
                break
            pieces.append(chunk)
            got += len(chunk)
        self.text = "".join(pieces)
        return got > 0

    def _advance(self, to: int) -> None:
        self.line += self.text.count("\n", self.pos, to)
        self.pos = to

    async def skip_blank(self) -> str:
        """The next non-blank character (not consumed), or "" at the end."""
        while True:
            found = _NON_BLANK.search(self.text, self.pos)
            if found is not None:
                self._advance(found.start())
                return found.group()
            self._advance(len(self.text))
            if not await self._more():
                return ""

    def take(self) -> None:
        """Consume the character skip_blank returned."""
        self._advance(self.pos + 1)

    async def value(self) -> tuple[int, Any]:
        """The next JSON value and the line it starts on."""
        while True:
            try:
                value, end = _DECODER.raw_decode(self.text, self.pos)
            except json.JSONDecodeError as exc:
                if self.ended or not _incomplete(exc, self.text):
                    self._fail(exc)
                await self._more(len(self.text) - self.pos or 1)
                continue
            if end == len(self.text) and not self.ended and isinstance(value, int | float):
                await self._more()  # a number at the end of a chunk may go on in the next one
                continue
            line = self.line
            self._advance(end)
            return line, value

    def _fail(self, exc: json.JSONDecodeError) -> NoReturn:
        line = self.line + self.text.count("\n", self.pos, exc.pos)
        newline = self.text.rfind("\n", 0, exc.pos)
        column = exc.pos - newline if newline >= 0 else self._column0 + exc.pos + 1
        raise InputError(f"{self._name}:{line}: not valid JSON: {exc.msg} (column {column})")


async def _objects(reader: _Reader, name: str) -> AsyncIterator[tuple[int, Any]]:
    """(line, value) of each element of a top-level array, or of each top-level value."""
    first = await reader.skip_blank()
    if first != "[":
        while await reader.skip_blank():
            yield await reader.value()
        return
    reader.take()
    if await reader.skip_blank() == "]":
        reader.take()
    else:
        while True:
            yield await reader.value()
            after = await reader.skip_blank()
            if after == "]":
                reader.take()
                break
            if after != ",":
                found = f"'{after}'" if after else "the end of the input"
                raise InputError(f"{name}:{reader.line}: the array goes on with {found}, not ',' or ']'")
            reader.take()
            await reader.skip_blank()
    if rest := await reader.skip_blank():
        raise InputError(f"{name}:{reader.line}: text after the closing ']' of the array ('{rest}')")


_BATCH_ROWS = 1024


class JsonParser:
    """Columns are the keys of the first object, so that object is read before any row is handed out."""

    def __init__(self, chunks: AsyncIterator[str], name: str) -> None:
        self._values = _objects(_Reader(chunks, name), name)
        self._name = name
        self._first: tuple[int, dict[str, Any]] | None = None
        self.columns: tuple[str, ...] = ()
        self.header_line = 1

    def _row(self, line: int, value: Any) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise InputError(f"{self._name}:{line}: a row must be a JSON object, found {json_kind(value)}")
        return value

    async def start(self) -> None:
        first = await anext(self._values, None)
        if first is not None:
            line, value = first
            self._first = (line, self._row(line, value))
            self.header_line = line
            self.columns = tuple(self._first[1])

    async def batches(self) -> AsyncIterator[Batch]:
        lines: list[int] = []
        rows: list[dict[str, Any]] = []
        if self._first is not None:
            lines.append(self._first[0])
            rows.append(self._first[1])
            self._first = None
        async for line, value in self._values:
            lines.append(line)
            rows.append(self._row(line, value))
            if len(rows) >= _BATCH_ROWS:
                yield lines, rows
                lines, rows = [], []
        if rows:
            yield lines, rows
