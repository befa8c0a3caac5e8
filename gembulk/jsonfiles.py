"""Files replaced whole on disk: read a small JSON file with a one-line error, replace any file atomically."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import Any, BinaryIO

from gembulk.errors import GembulkError


def read_json(path: str, what: str, error: type[GembulkError]) -> Any:
    """The parsed file; an unreadable or malformed one raises `error` naming the file (and line)."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from exc
    except json.JSONDecodeError as exc:
        raise error(f"{path}:{exc.lineno}: {what} is not valid JSON ({exc.msg})") from exc


def fsync_directory(directory: str) -> None:
    """Make a rename durable; not every platform or filesystem can sync a directory."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def replaced_atomically(
    path: str, *, prefix: str = ".gembulk-", suffix: str = ".tmp", keep_mode: bool = False
) -> Iterator[BinaryIO]:
    """Write a temp file beside `path`, fsync it and rename it over `path`: a reader (or a crash) sees
    the old file or the new one, never half. An error inside the block leaves `path` untouched."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if keep_mode and os.path.exists(path):
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def write_json_atomic(
    path: str, payload: Any, *, sort_keys: bool = False, prefix: str = ".gembulk-", suffix: str = ".tmp"
) -> None:
    """The payload as indented JSON, replacing `path` atomically (the temp file named prefix…suffix)."""
    text = json.dumps(payload, indent=2, sort_keys=sort_keys, ensure_ascii=False) + "\n"
    with replaced_atomically(path, prefix=prefix, suffix=suffix) as handle:
        handle.write(text.encode("utf-8"))
