"""JSONL inputs: one JSON object a line; the columns are the keys of the first object."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from gembulk.errors import InputError
from gembulk.inputs.parser import Batch, lines


def json_kind(value: Any) -> str:
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
        hint = ""
        if line.strip() in ("{", "["):  # pretty-printed JSON: one value over many lines
            hint = "; JSON spread over several lines is read with --input-format json (or a .json name)"
        where = f"{name}:{number}"
        raise InputError(f"{where}: not a JSON object: {exc.msg} (column {exc.colno}){hint}") from None
    if not isinstance(value, dict):
        raise InputError(f"{name}:{number}: not a JSON object: found {json_kind(value)}")
    return value


async def _jsonl_rows(lines: AsyncIterator[list[tuple[int, str]]], name: str) -> AsyncIterator[Batch]:
    async for batch in lines:
        numbers = [n for n, line in batch if line.strip()]
        if numbers:
            yield numbers, [_parse_json_line(name, n, line) for n, line in batch if line.strip()]


class JsonlParser:
    """Columns are the keys of the first object, so that object is read before any row is handed out."""

    def __init__(self, chunks: AsyncIterator[str], name: str) -> None:
        self._rows = _jsonl_rows(lines(chunks), name)
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
