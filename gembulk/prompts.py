"""Prompt templates: parsing `{column}` placeholders, checking them against the input, rendering rows."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gembulk.errors import TemplateError
from gembulk.inputs.formats import PER_ROW_FIELDS

# Characters that would make str.format do something other than look up a column; refusing them
# keeps a template a plain fill-in-the-blanks text whatever the column values are.
_FORBIDDEN = {
    ".": "attribute access",
    "[": "index access",
    "!": "a conversion",
    ":": "a format spec",
}
_ALLOWED = (
    "a placeholder is a column name in braces, e.g. {prompt}; "
    "names cannot contain . [ ] ! : { }; write {{ and }} for literal braces"
)
_MAX_LISTED_COLUMNS = 30

Piece = tuple[str, str | None]  # literal text, then the column whose value follows it (None at the end)


def _where(text: str, index: int) -> str:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return f"line {line}, column {column}"


def _check_name(text: str, start: int, name: str) -> None:
    """Refuse a placeholder body that is not a plain column name."""
    where = _where(text, start)
    if not name:
        raise TemplateError(f"empty placeholder {{}} at {where}: {_ALLOWED}")
    if name.isdigit():
        raise TemplateError(f"positional placeholder {{{name}}} at {where} is not supported: {_ALLOWED}")
    for char, what in _FORBIDDEN.items():
        if char in name:
            raise TemplateError(
                f"placeholder {{{name}}} at {where} uses {what}, which is not supported: {_ALLOWED}"
            )
    if "]" in name:
        raise TemplateError(
            f"placeholder {{{name}}} at {where} contains ']', which is not supported: {_ALLOWED}"
        )


def _scan(text: str) -> list[Piece]:
    """Split a template into (literal, field) pieces.

    Hand-written rather than string.Formatter().parse: the Formatter accepts nested and positional
    fields and reports malformed braces without a position; a scanner can say exactly where.
    """
    pieces: list[Piece] = []
    literal: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "{" and text.startswith("{{", i):
            literal.append("{")
            i += 2
        elif char == "}" and text.startswith("}}", i):
            literal.append("}")
            i += 2
        elif char == "}":
            raise TemplateError(f"unbalanced '}}' at {_where(text, i)}: write '}}}}' for a literal brace")
        elif char == "{":
            name, i = _placeholder(text, i)
            pieces.append(("".join(literal), name))
            literal = []
        else:
            stop = _next_brace(text, i)
            literal.append(text[i:stop])
            i = stop
    pieces.append(("".join(literal), None))
    return pieces


def _next_brace(text: str, start: int) -> int:
    positions = [p for p in (text.find("{", start), text.find("}", start)) if p >= 0]
    return min(positions) if positions else len(text)


def _placeholder(text: str, start: int) -> tuple[str, int]:
    """The column name of the placeholder opening at start, and the index just past it."""
    close = text.find("}", start + 1)
    nested = text.find("{", start + 1)
    if close < 0:
        raise TemplateError(f"unbalanced '{{' at {_where(text, start)}: write '{{{{' for a literal brace")
    if 0 <= nested < close:
        raise TemplateError(
            f"unexpected '{{' inside the placeholder opened at {_where(text, start)}: "
            f"placeholders cannot nest; write '{{{{' for a literal brace"
        )
    name = text[start + 1 : close]
    _check_name(text, start, name)
    return name, close + 1


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _list_columns(columns: Sequence[str]) -> str:
    if not columns:
        return "none: the input has no rows"
    shown = ", ".join(columns[:_MAX_LISTED_COLUMNS])
    more = len(columns) - _MAX_LISTED_COLUMNS
    return f"{shown}, and {more} more" if more > 0 else shown


def _closest(name: str, columns: Sequence[str]) -> str | None:
    folded = name.strip().casefold()
    for column in columns:
        if column.strip().casefold() == folded:
            return column
    matches = difflib.get_close_matches(name, columns, n=1, cutoff=0.6)
    return matches[0] if matches else None


@dataclass(frozen=True)
class Template:
    """A parsed prompt template; render() fills its placeholders from a row's fields."""

    source: str
    fields: tuple[str, ...]  # distinct column names, in order of first use
    pieces: tuple[Piece, ...] = field(repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        if not self.pieces:  # built as Template(source, fields): compile the source
            object.__setattr__(self, "pieces", tuple(_scan(self.source)))

    @classmethod
    def parse(cls, text: str) -> Template:
        pieces = tuple(_scan(text))
        names = (name for _, name in pieces if name is not None)
        return cls(source=text, fields=tuple(dict.fromkeys(names)), pieces=pieces)

    @classmethod
    def of_column(cls, column: str) -> Template:
        """The template that sends one column's value as is, whatever characters its name has."""
        escaped = column.replace("{", "{{").replace("}", "}}")
        return cls(source=f"{{{escaped}}}", fields=(column,), pieces=(("", column), ("", None)))

    def check_columns(self, columns: Iterable[str], source_name: str) -> None:
        """Refuse a template naming a column the input does not have, suggesting the likely one."""
        available = list(columns)
        present = set(available)
        for name in self.fields:
            if name in present:
                continue
            message = (
                f"template uses {{{name}}}, but {source_name} has no column '{name}' "
                f"(columns: {_list_columns(available)})"
            )
            suggestion = _closest(name, available)
            if suggestion is not None:
                message += f"; did you mean {{{suggestion}}}?"
            raise TemplateError(message)

    def missing(self, fields: Mapping[str, Any]) -> list[str]:
        """The placeholders this row has no value for (the field is absent or null, as JSONL allows)."""
        return [name for name in self.fields if fields.get(name) is None]

    def render(self, fields: Mapping[str, Any]) -> str:
        out: list[str] = []
        append = out.append
        try:
            for literal, name in self.pieces:
                append(literal)
                if name is not None:
                    append(_to_text(fields[name]))
        except KeyError as exc:
            raise TemplateError(f"row has no field '{exc.args[0]}' used by the template") from None
        return "".join(out)


def _read_template_file(path: str) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise TemplateError(f"cannot read template file {path}: {reason}") from None
    # Editors end files with a newline nobody meant as part of the prompt.
    return text.removesuffix("\n").removesuffix("\r")


def _default_template(
    prompt_column: str | None, columns: Sequence[str], fmt: str, source_name: str
) -> Template:
    if prompt_column is not None:
        return Template.of_column(prompt_column)
    if "prompt" in columns:
        return Template.of_column("prompt")
    noun = "field" if fmt in PER_ROW_FIELDS else "column"
    raise TemplateError(
        f"{source_name} has no 'prompt' {noun} (columns: {_list_columns(columns)}); "
        f"say what to send with -t/--template 'text with {{column}} placeholders' "
        f"or --prompt-column NAME"
    )


def _parse_named(text: str, label: str) -> Template:
    """Parse, saying which template is wrong (the -t text or a file) in the message."""
    try:
        return Template.parse(text)
    except TemplateError as exc:
        raise TemplateError(f"{label}: {exc.message}") from None


def prompt_template(
    template: str | None,
    template_file: str | None,
    prompt_column: str | None,
    columns: Sequence[str],
    fmt: str,
    source_name: str,
    *,
    check: bool = True,
) -> Template:
    """The template that applies to this input, checked against its columns (unless `check` is False:
    a JSONL input's rows need not share the first row's fields, so its caller checks after a scan)."""
    if template is not None and template_file is not None:
        raise TemplateError("give either -t/--template or --template-file, not both")
    if prompt_column is not None and (template is not None or template_file is not None):
        raise TemplateError(
            "--prompt-column cannot be combined with a template: the template decides the text"
        )
    if template is not None:
        chosen = _parse_named(template, "template")
    elif template_file is not None:
        chosen = _parse_named(_read_template_file(template_file), f"template file {template_file}")
    else:
        chosen = _default_template(prompt_column, columns, fmt, source_name)
    if check:
        chosen.check_columns(columns, source_name)
    return chosen
