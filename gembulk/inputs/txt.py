"""TXT inputs: every non-blank line is one prompt (the column "prompt")."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from gembulk.inputs.parser import Batch, lines


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


class TxtParser:
    def __init__(self, chunks: AsyncIterator[str]) -> None:
        self._rows = _txt_rows(lines(chunks))
        self.columns: tuple[str, ...] = ("prompt",)
        self.header_line = 1

    async def start(self) -> None:
        return None

    def batches(self) -> AsyncIterator[Batch]:
        return self._rows
