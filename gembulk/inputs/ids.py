"""Row ids: from the id column (checked present, well-formed and unique) or the data-row number."""

from __future__ import annotations

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


class IdChecker:
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
        row_id = id_text(value)
        if row_id is None:
            raise InputError(
                f"{self._name}:{line}: id in '{column}' must be a string or a number, not {json_kind(value)}"
            )
        return row_id


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
