"""Small JSON files on disk: read one with a one-line error, write one atomically."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any

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


def write_json_atomic(path: str, payload: Any, *, sort_keys: bool = False) -> None:
    """Temp file in the same directory, fsync, rename: a reader (or a crash) sees the old or the new file."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".gembulk-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=sort_keys, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)
