"""Input formats: which format an input is (named, or from its extension), and the parser that reads it.

A new input format plugs in here: its name in FORMATS (and its extensions), its parser in make_parser.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import PurePath

from gembulk.errors import InputError, UsageError
from gembulk.inputs.delimited import CsvParser
from gembulk.inputs.jsonl import JsonlParser
from gembulk.inputs.parser import Parser
from gembulk.inputs.txt import TxtParser

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "txt")

_EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".txt": "txt"}
_ALIASES = {"ndjson": "jsonl"}


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


def make_parser(fmt: str, chunks: AsyncIterator[str], name: str) -> Parser:
    if fmt == "csv":
        return CsvParser(chunks, name, ",")
    if fmt == "tsv":
        return CsvParser(chunks, name, "\t")
    if fmt == "jsonl":
        return JsonlParser(chunks, name)
    if fmt == "txt":
        return TxtParser(chunks)
    raise UsageError(f"unknown input format '{fmt}' (accepted: {', '.join(FORMATS)})")
