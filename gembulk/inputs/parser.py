"""What every input parser gives: the columns first, then (line numbers, field dicts) batches."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

# Rows travel as parallel lists (start lines, field dicts) rather than a tuple per row: at a
# million rows the per-row allocations are what a scan costs.
Batch = tuple[list[int], list[dict[str, Any]]]


class Parser(Protocol):
    """One input format: `start()` reads up to the first row (the columns); `batches()` streams the rest."""

    columns: tuple[str, ...]
    header_line: int

    async def start(self) -> None: ...

    def batches(self) -> AsyncIterator[Batch]: ...


async def lines(chunks: AsyncIterator[str]) -> AsyncIterator[list[tuple[int, str]]]:
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
