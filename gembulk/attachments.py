"""`--attach` columns: a row's values read as media references, and the local files checked before a run."""

from __future__ import annotations

import mimetypes
import os
import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from yarl import URL

from gembulk import confined
from gembulk.errors import InputError, UsageError
from gembulk.inputs.formats import PER_ROW_FIELDS
from gembulk.records import Attachment, InputRow
from gembulk.urlguard import URL_SCHEMES

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
# A URL scheme (RFC 3986) before the first colon: `notes:v2.png` reads as one too; `./notes:v2.png` does not.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")


def media_type(name: str) -> str | None:
    """The media type of a file or URL path from its extension, or None when it cannot be told."""
    extension = posixpath.splitext(name.lower())[1]
    return MEDIA_TYPES.get(extension) or mimetypes.guess_type(name, strict=False)[0]


@dataclass(frozen=True)
class AttachSpec:
    """Which columns hold attachments, and the folder local paths are confined to."""

    columns: tuple[str, ...]
    root: str  # the attachment root, resolved: relative paths start here, and no path may leave it

    @classmethod
    def for_input(cls, columns: Sequence[str], input_path: str | None, root: str | None = None) -> AttachSpec:
        """The root is --attach-root, else the input file's folder, else (stdin) the current directory."""
        if root is None:
            root = os.path.dirname(os.path.abspath(input_path)) if input_path is not None else os.getcwd()
        return cls(tuple(dict.fromkeys(columns)), confined.real_root(root))

    def of(self, row: InputRow) -> tuple[Attachment, ...]:
        """The row's attachments in column order; an empty cell (or a missing JSONL field) adds none."""
        found: list[Attachment] = []
        for column in self.columns:
            for value in _values(row.fields.get(column)):
                found.append(self.reference(value, column))
        return tuple(found)

    def reference(self, value: str, column: str) -> Attachment:
        scheme = url_scheme(value)
        if scheme in URL_SCHEMES:
            return Attachment("url", value, column, media_type(urlsplit(value).path))
        if scheme is not None:  # file:, ftp:, data: …: refused, and never read as a local path
            return Attachment("scheme", value, column)
        if value.startswith("files/"):
            return Attachment("file", value, column)
        path = confined.resolve(self.root, value)
        # The name's extension first: a link into a content-addressed store has none at its target.
        return Attachment("path", path, column, media_type(value) or media_type(path), root=self.root)


def url_scheme(value: str) -> str | None:
    """The value's URL scheme, lower-cased (`HTTP://…` is a URL too), or None for a path or a file name."""
    found = _SCHEME.match(value)
    return found.group(1).lower() if found else None


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
        raise UsageError("--attach needs a table or JSON input: a .txt input has only the prompt")
    if fmt in PER_ROW_FIELDS:
        return
    for column in spec.columns:
        if column not in columns:
            raise InputError(
                f"{source_name}: no column '{column}' named by --attach (columns: {', '.join(columns)})"
            )


class AttachmentCheck:
    """Collects the rows whose attachments cannot be sent, for one error before anything is: a local path
    outside the attachment root, missing or of an unknown type; a URL of another scheme or with no host."""

    def __init__(self, source_name: str) -> None:
        self._source_name = source_name
        self._problems: list[str] = []
        self._count = 0
        self._seen: dict[tuple[str, str], str | None] = {}  # (kind, value) -> problem; bounded below

    def check(self, row: InputRow, attachments: Iterable[Attachment]) -> None:
        for attachment in attachments:
            if attachment.kind == "file":
                continue
            problem = self._problem(attachment)
            if problem is not None:
                self._count += 1
                if len(self._problems) < NAMED_ROWS:
                    self._problems.append(f"line {row.line} (id {row.id}): {problem}")

    def _problem(self, attachment: Attachment) -> str | None:
        key = (attachment.kind, attachment.value)
        if key in self._seen:
            return self._seen[key]
        problem = attachment_problem(attachment)
        if len(self._seen) < 100_000:  # a memo for repeated paths, not a second copy of the input
            self._seen[key] = problem
        return problem

    def raise_if_any(self) -> None:
        if not self._problems:
            return
        more = self._count - len(self._problems)
        listed = "; ".join(self._problems) + (f"; and {more} more" if more else "")
        raise InputError(f"{self._source_name}: --attach: {listed}", hint="nothing was sent")


def attachment_problem(attachment: Attachment) -> str | None:
    """Why this attachment cannot be sent, as far as can be told before the run; None when it can."""
    what = f"{attachment.column} {attachment.value}"
    if attachment.kind == "scheme":
        return f"{what}: a {url_scheme(attachment.value)}: URL; only http and https URLs are fetched"
    if attachment.kind == "url":
        try:
            host = URL(attachment.value).raw_host
        except ValueError as exc:
            return f"{what}: not a valid URL ({exc})"
        return None if host else f"{what}: not a valid URL (no host)"
    if attachment.kind != "path":
        return None
    assert attachment.root is not None
    path = attachment.value
    # Checked first, and said the same way whether or not such a file exists: a row may not probe outside.
    if not confined.inside(attachment.root, path):
        return f"{attachment.column} file {path} is outside the attachment folder {attachment.root}"
    if not os.path.isfile(path):
        return f"{attachment.column} file {path} not found"
    if attachment.mime_type is None:
        return f"{attachment.column} file {path}: cannot tell its media type from the extension"
    return None


def identity(attachment: Attachment) -> str:
    """What decides a cache hit for an attachment: a local file's content, a URL, or a file name.

    A URL is keyed by itself, not by what it serves today, so a cache hit needs no download. A local file
    that cannot be read (gone, or a link put in its way since the check) is a miss: the media stage then
    fails its row.
    """
    if attachment.kind == "path" and attachment.root is not None:
        try:
            return f"sha256:{confined.digest(attachment.root, attachment.value)}"
        except OSError:
            return f"unreadable:{attachment.value}"
    return f"{attachment.kind}:{attachment.value}"
