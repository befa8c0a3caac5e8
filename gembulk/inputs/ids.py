"""Row ids: from the id column (checked present, well-formed and unique) or the data-row number."""

from __future__ import annotations

import heapq
from array import array
from typing import Any

from gembulk.errors import InputError
from gembulk.inputs.jsonl import json_kind

_DEFAULT_ID_COLUMN = "id"


def id_text(value: Any) -> str | None:
    """The id a field value stands for; None when the value cannot be an id."""
    if isinstance(value, str):
        return value if value.strip() else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return str(value)


# Hashes sorted per run of this many ids: sorting costs a list of Python ints, so only a run at a time.
_RUN = 65536


class IdChecker:
    """Gives each row its id and refuses missing and malformed ones; keeps what finds repeated ones.

    Repeats are found from 8 bytes an id (its hash, in sorted runs) instead of the id strings, which
    at a million rows is the difference between ~10 MB and ~130 MB. `repeated_hashes()` after the pass
    names the hashes seen twice; the caller reads the input again for those alone (`first_repeat`).
    `exact=True` keeps the ids themselves and refuses a repeat at once (an input that cannot be read again).
    """

    def __init__(self, name: str, column: str | None, *, unique: bool = True, exact: bool = False) -> None:
        self._name = name
        self._column = column
        self._unique = unique  # False: a pass after a validating scan, which already refused repeats
        self._exact = exact
        self._first_line: dict[str, int] = {}  # exact: only ids are kept, never rows
        self._hashes = array("q")
        self._runs: list[array[int]] = []

    def id_for(self, line: int, index: int, fields: dict[str, Any]) -> str:
        if self._column is None:
            return str(index)  # row numbers cannot repeat, so they need no bookkeeping
        row_id = self._explicit_id(line, fields)
        if not self._unique:
            return row_id
        if not self._exact:
            self._hashes.append(hash(row_id))
            if len(self._hashes) >= _RUN:
                self._runs.append(array("q", sorted(self._hashes)))
                self._hashes = array("q")
            return row_id
        first = self._first_line.setdefault(row_id, line)
        if first != line:
            raise InputError(f"{self._name}:{line}: duplicate id '{row_id}' (first at line {first})")
        return row_id

    def repeated_hashes(self) -> set[int]:
        """Hashes of the ids seen more than once (a hash collision, once in ~10^10 inputs of a million
        ids, shows up here too: the second read tells them apart)."""
        runs = [*self._runs, array("q", sorted(self._hashes))]
        self._runs, self._hashes = [], array("q")
        repeated: set[int] = set()
        previous = None
        for value in heapq.merge(*runs):
            if value == previous:
                repeated.add(value)
            previous = value
        return repeated

    def _explicit_id(self, line: int, fields: dict[str, Any]) -> str:
        column = self._column
        assert column is not None
        if column not in fields:
            raise InputError(f"{self._name}:{line}: row has no id: field '{column}' is missing")
        value = fields[column]
        if value is None or (isinstance(value, str) and not value.strip()):
            raise InputError(f"{self._name}:{line}: row has no id: '{column}' is empty")
        row_id = id_text(value)
        if row_id is None:
            raise InputError(
                f"{self._name}:{line}: id in '{column}' must be a string or a number, not {json_kind(value)}"
            )
        return row_id


def first_repeat(name: str, rows: list[tuple[str, int]], seen: dict[str, int]) -> None:
    """Raise for the first (id, line) of rows whose id is in seen (id -> first line); add the others."""
    for row_id, line in rows:
        first = seen.setdefault(row_id, line)
        if first != line:
            raise InputError(f"{name}:{line}: duplicate id '{row_id}' (first at line {first})")


def resolve_id_column(
    name: str, wanted: str | None, columns: tuple[str, ...], header_line: int
) -> str | None:
    """The id column: the one asked for (it must exist), else "id" when present, else None (row numbers)."""
    if wanted is None:
        return _DEFAULT_ID_COLUMN if _DEFAULT_ID_COLUMN in columns else None
    # An input without rows (columns unknown) has nothing to refuse.
    if columns and wanted not in columns:
        raise InputError(
            f"{name}:{header_line}: id column '{wanted}' is not in the input (columns: {', '.join(columns)})"
        )
    return wanted
