"""An input's bytes (a file, or stdin) in chunks, hashed on the way, decoded as UTF-8; stdin spooling."""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

import aiofiles

from gembulk.errors import InputError

# Read size per thread hop; tests shrink it to force chunk boundaries inside records.
CHUNK_SIZE = 256 * 1024


class ByteSource:
    """Raw chunks of a file (via aiofiles) or of stdin (via a worker thread per chunk)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._file: Any = None
        self._stdin: BinaryIO | None = None
        self._hash = hashlib.sha256()

    async def open(self) -> None:
        if self._path == "-":
            self._stdin = sys.stdin.buffer
        else:
            self._file = await aiofiles.open(self._path, "rb")

    async def read(self) -> bytes:
        size = CHUNK_SIZE
        if self._stdin is not None:
            # read1 returns what a pipe has instead of blocking until a full chunk arrives.
            read = getattr(self._stdin, "read1", self._stdin.read)
            chunk = await asyncio.to_thread(read, size)
        else:
            chunk = await self._file.read(size)
        self._hash.update(chunk)
        return chunk

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
            self._file = None


def _utf8_error(name: str, newlines_before: int, exc: UnicodeDecodeError) -> InputError:
    line = newlines_before + exc.object[: exc.start].count(b"\n") + 1
    bad = exc.object[exc.start : exc.start + 1].hex()
    return InputError(f"{name}:{line}: invalid UTF-8 (byte 0x{bad}); the input must be UTF-8 text")


async def text_chunks(source: ByteSource, name: str) -> AsyncIterator[str]:
    """UTF-8 text of the input in chunks, without a leading BOM."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    at_start = True
    while chunk := await source.read():
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _utf8_error(name, newlines, exc) from None
        newlines += chunk.count(b"\n")
        if at_start and text:
            text = text.removeprefix("\ufeff")
            at_start = False
        if text:
            yield text
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _utf8_error(name, newlines, exc) from None


def _copy_chunk(src: BinaryIO, dst: BinaryIO) -> int:
    read = getattr(src, "read1", src.read)
    chunk = read(CHUNK_SIZE)
    dst.write(chunk)
    return len(chunk)


async def spool_stdin(tmp_dir: str | None = None, prefix: str = "gembulk-stdin-") -> str:
    """Copy stdin to a temporary file and return its path (the caller deletes it).

    Stdin can be read once, but the tool needs a validating pass before the real one. One thread hop
    per chunk keeps memory flat and lets a Ctrl-C land between chunks.
    """
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=".gembulk-tmp", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as dst:
            src = sys.stdin.buffer
            while await asyncio.to_thread(_copy_chunk, src, dst):
                pass
    except BaseException:
        os.unlink(path)
        raise
    return path
