"""Input formats: which format an input is (named, from its extension, or from its first bytes), and the
parser that reads it.

A new input format plugs in here: its name in FORMATS (and its extensions), its parser in make_parser.
"""

from __future__ import annotations

from pathlib import PurePath

from gembulk.compressed import SUFFIXES
from gembulk.errors import InputError, UsageError
from gembulk.inputs.compression import PARQUET_MAGIC
from gembulk.inputs.delimited import CsvParser
from gembulk.inputs.jsondoc import JsonParser
from gembulk.inputs.jsonl import JsonlParser
from gembulk.inputs.parquet import ParquetParser
from gembulk.inputs.parser import Parser
from gembulk.inputs.stream import ByteSource, is_stream, text_chunks
from gembulk.inputs.txt import TxtParser

FORMATS: tuple[str, ...] = ("csv", "tsv", "jsonl", "json", "txt", "parquet")
# Formats whose rows may each have their own fields (the others have one header for every row).
PER_ROW_FIELDS = frozenset({"jsonl", "json"})
# Formats read as delimited text: the ones --delimiter applies to.
DELIMITED = frozenset({"csv", "tsv"})

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".txt": "txt",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_ALIASES = {"ndjson": "jsonl"}
_SPREADSHEETS = {".xlsx", ".xls", ".xlsm", ".ods", ".numbers"}
_SNIFF_LIMIT = 1024 * 1024  # blank text read at most before deciding an input is empty


def detect_format(path: str, explicit: str | None) -> str | None:
    """The input format: the explicit one, else from the name (a `.gz`/`.zst` suffix names the
    compression: `rows.csv.gz` is CSV); None when only the content can tell (stdin, a pipe, /dev/stdin)."""
    if explicit is not None:
        fmt = _ALIASES.get(explicit.lower(), explicit.lower())
        if fmt not in FORMATS:
            raise UsageError(f"unknown input format '{explicit}' (accepted: {', '.join(FORMATS)})")
        return fmt
    if path == "-":
        return None
    name = PurePath(path)
    suffix = name.suffix.lower()
    if suffix in SUFFIXES:
        name = name.with_suffix("")
        suffix = name.suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if is_stream(path) or path.startswith("/dev/"):  # /dev/stdin may be a redirected file: no name either
        return None
    what = f"extension '{suffix}'" if suffix else "no extension"
    hint = "; save the sheet as CSV UTF-8 first" if suffix in _SPREADSHEETS else ""
    raise InputError(
        f"{path}: cannot tell the input format ({what}){hint}; accepted extensions: "
        f"{', '.join(_EXTENSIONS)} (also compressed: .csv.gz, .jsonl.zst, …); "
        f"or name it with --input-format {'|'.join(FORMATS)}"
    )


async def sniff_format(path: str, name: str) -> str:
    """The format of an input that has no name to go by (stdin, a pipe), from its first bytes: Parquet,
    JSON (an array, or pretty-printed objects), JSON lines; other text is refused with the options that
    read it."""
    source = ByteSource(path, name)
    await source.open()
    try:
        head = b""
        while len(head) < _SNIFF_LIMIT and (chunk := await source.read()):
            head += chunk
            if len(head.lstrip(b"\xef\xbb\xbf \t\r\n")) >= 64:
                break
    finally:
        await source.close()
    if head.startswith(PARQUET_MAGIC):
        return "parquet"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    first_line = text.split(b"\n", 1)[0].strip()
    if text.startswith(b"[") or first_line == b"{":  # an array, or objects pretty-printed (jq's output)
        return "json"
    if not text or text.startswith(b"{"):
        return "jsonl"
    first = text.split(b"\n", 1)[0][:40].decode("utf-8", "replace").rstrip("\r")
    raise InputError(
        f"{name}: cannot tell the input format: it is not JSON (it starts with {first!r}); "
        "for one prompt a line pass --input-format txt, for a table --input-format csv or tsv"
    )


def make_parser(fmt: str, source: ByteSource, name: str, delimiter: str | None = None) -> Parser:
    if delimiter is not None and fmt not in DELIMITED:
        raise UsageError(f"--delimiter applies to CSV and TSV input, not {fmt}")
    if fmt == "parquet":
        return ParquetParser(source.path, name, source.compression)
    chunks = text_chunks(source, name)
    if fmt == "csv":
        return CsvParser(chunks, name, delimiter)
    if fmt == "tsv":
        return CsvParser(chunks, name, delimiter or "\t")
    if fmt == "jsonl":
        return JsonlParser(chunks, name)
    if fmt == "json":
        return JsonParser(chunks, name)
    if fmt == "txt":
        return TxtParser(chunks)
    raise UsageError(f"unknown input format '{fmt}' (accepted: {', '.join(FORMATS)})")
