"""Modes of the files gembulk creates: 0600 for whatever holds answers or request data (cache, state,
temporary and kept copies), so other users of the machine cannot read them; the output follows the umask,
as a shell redirection would."""

from __future__ import annotations

import os
import secrets
import shutil
from typing import BinaryIO

PRIVATE = 0o600


def create_private(path: str) -> None:
    """Create `path` empty and 0600 unless it exists (a later open for writing keeps the mode); an existing
    file is left as it is."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, PRIVATE)
    except FileExistsError:
        return
    os.close(fd)


def open_private(path: str, buffering: int = -1) -> BinaryIO:
    """Open `path` for writing from empty, created 0600 (an existing file is truncated, its mode kept)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, PRIVATE)
    return os.fdopen(fd, "wb", buffering=buffering)


def copy_private(source: str, target: str) -> None:
    """Copy a file to `target`, created 0600."""
    with open(source, "rb") as src, open_private(target) as dst:
        shutil.copyfileobj(src, dst, 1 << 20)


def new_output_file(directory: str, prefix: str, suffix: str, like: str | None = None) -> str:
    """Create an empty file with a fresh name in `directory`, to be renamed over an output: its mode is
    the umask's (as `> out` would give) or, when `like` exists, that file's."""
    while True:
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}{suffix}")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        try:
            if like is not None and os.path.exists(like):
                os.fchmod(fd, os.stat(like).st_mode & 0o7777)
        finally:
            os.close(fd)
        return path
