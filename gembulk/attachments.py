"""`--attach` columns: a row's values read as media references, and the local files checked before a run."""

from __future__ import annotations

import functools
import hashlib
import mimetypes
import os
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from gembulk.errors import InputError, UsageError
from gembulk.records import Attachment, InputRow

# The media types Gemini reads, by extension. Fixed here rather than taken from the system's mime.types,
# so a file gets the same type on every machine (mimetypes is only the fallback for the rest).
MEDIA_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".gif": "image/gif",
    ".wav": "audio/wav",
    ".mp3": "audio/mp3",
    ".aiff": "audio/aiff",
    ".aac": "audio/aac",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".m4a": "audio/mp4",
    ".mp4": "video/mp4",
    ".mpeg": "video/mpeg",
    ".mpg": "video/mpg",
    ".mov": "video/mov",
    ".avi": "video/avi",
    ".flv": "video/x-flv",
    ".webm": "video/webm",
    ".wmv": "video/wmv",
    ".3gp": "video/3gpp",
    ".pdf": "application/pdf",
    ".txt": "text/plain",
    ".md": "text/md",
    ".csv": "text/csv",
    ".html": "text/html",
    ".htm": "text/html",
    ".xml": "text/xml",
    ".json": "application/json",
    ".rtf": "text/rtf",
    ".css": "text/css",
    ".js": "text/javascript",
    ".py": "text/x-python",
}
# How many rows a missing-file error names before it just counts the rest.
NAMED_ROWS = 5


def media_type(name: str) -> str | None:
    """The media type of a file or URL path from its extension, or None when it cannot be told."""
    extension = posixpath.splitext(name.lower())[1]
    return MEDIA_TYPES.get(extension) or mimetypes.guess_type(name, strict=False)[0]


@dataclass(frozen=True)
class AttachSpec:
    """Which columns hold attachments, and where relative paths are looked up."""

    columns: tuple[str, ...]
    base_dirs: tuple[str, ...]  # the current directory first, then the input file's own directory

    @classmethod
    def for_input(cls, columns: Sequence[str], input_path: str | None) -> AttachSpec:
        bases = [os.getcwd()]
        if input_path is not None:
            beside = os.path.dirname(os.path.abspath(input_path))
            if beside not in bases:
                bases.append(beside)
        return cls(tuple(dict.fromkeys(columns)), tuple(bases))

    def of(self, row: InputRow) -> tuple[Attachment, ...]:
        """The row's attachments in column order; an empty cell (or a missing JSONL field) adds none."""
        found: list[Attachment] = []
        for column in self.columns:
            for value in _values(row.fields.get(column)):
                found.append(self.reference(value, column))
        return tuple(found)

    def reference(self, value: str, column: str) -> Attachment:
        if value.startswith(("http://", "https://")):
            return Attachment("url", value, column, media_type(urlsplit(value).path))
        if value.startswith("files/"):
            return Attachment("file", value, column)
        path = self._locate(os.path.expanduser(value))
        return Attachment("path", path, column, media_type(path))

    def _locate(self, path: str) -> str:
        if os.path.isabs(path):
            return path
        candidates = [os.path.join(base, path) for base in self.base_dirs]
        return next((c for c in candidates if os.path.isfile(c)), candidates[0])


def _values(cell: Any) -> Iterable[str]:
    """A cell's references: a string, or (JSONL) a list of strings; blanks are skipped."""
    items = cell if isinstance(cell, list) else [cell]
    for item in items:
        if item is None:
            continue
        text = str(item).strip()
        if text:
            yield text


def check_columns(spec: AttachSpec, columns: Sequence[str], fmt: str, source_name: str) -> None:
    """Attach columns must exist (a JSONL row may leave the field out: that row has no attachment)."""
    if fmt == "txt":
        raise UsageError("--attach needs a CSV, TSV or JSONL input: a .txt input has only the prompt")
    if fmt == "jsonl":
        return
    for column in spec.columns:
        if column not in columns:
            raise InputError(
                f"{source_name}: no column '{column}' named by --attach (columns: {', '.join(columns)})"
            )


class LocalFileCheck:
    """Collects the rows whose local attachments are missing or of an unknown type, for one error."""

    def __init__(self, source_name: str) -> None:
        self._source_name = source_name
        self._problems: list[str] = []
        self._count = 0
        self._seen: dict[str, str | None] = {}  # path -> problem (None: fine); bounded below

    def check(self, row: InputRow, attachments: Iterable[Attachment]) -> None:
        for attachment in attachments:
            if attachment.kind != "path":
                continue
            problem = self._problem(attachment)
            if problem is not None:
                self._count += 1
                if len(self._problems) < NAMED_ROWS:
                    self._problems.append(f"line {row.line} (id {row.id}): {problem}")

    def _problem(self, attachment: Attachment) -> str | None:
        path = attachment.value
        if path in self._seen:
            return self._seen[path]
        if not os.path.isfile(path):
            problem: str | None = f"{attachment.column} file {path} not found"
        elif attachment.mime_type is None:
            problem = f"{attachment.column} file {path}: cannot tell its media type from the extension"
        else:
            problem = None
        if len(self._seen) < 100_000:  # a memo for repeated paths, not a second copy of the input
            self._seen[path] = problem
        return problem

    def raise_if_any(self) -> None:
        if not self._problems:
            return
        more = self._count - len(self._problems)
        listed = "; ".join(self._problems) + (f"; and {more} more" if more else "")
        raise InputError(f"{self._source_name}: --attach: {listed}", hint="nothing was sent")


@functools.lru_cache(maxsize=4096)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def file_digest(path: str) -> str:
    """sha256 of a local file's bytes, remembered while the file is unchanged (size and mtime)."""
    info = os.stat(path)
    return _digest(path, info.st_size, info.st_mtime_ns)


def identity(attachment: Attachment) -> str:
    """What decides a cache hit for an attachment: a local file's content, a URL, or a file name.

    A URL is keyed by itself, not by what it serves today, so a cache hit needs no download.
    """
    if attachment.kind == "path":
        return f"sha256:{file_digest(attachment.value)}"
    return f"{attachment.kind}:{attachment.value}"
