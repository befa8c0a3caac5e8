"""An input's bytes (a file, or stdin) in chunks: hashed as read, decompressed, decoded as UTF-8; spooling."""

from __future__ import annotations

import asyncio
import codecs
import hashlib
import os
import stat
import sys
import tempfile
from collections.abc import AsyncIterator
from typing import BinaryIO

from gembulk.compressed import GZIP_MAGIC, ZSTD_MAGIC, compression_of
from gembulk.errors import InputError
from gembulk.inputs.compression import MAGIC_SIZE, PARQUET_MAGIC, Readable, decompressing

# Read size per thread hop; tests shrink it to force chunk boundaries inside records.
CHUNK_SIZE = 256 * 1024


class _HashedRaw:
    """The raw bytes of the input, each hashed once as it is read; the first bytes are read ahead to
    tell compression, and handed out again first."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._read1 = getattr(file, "read1", file.read)  # a pipe: what it has, not a full chunk
        self.hash = hashlib.sha256()
        self.head = b""
        self._unread = b""

    def peek_head(self) -> bytes:
        while len(self.head) < MAGIC_SIZE and (more := self._raw(MAGIC_SIZE - len(self.head))):
            self.head += more
        self._unread = self.head
        return self.head

    def _raw(self, size: int) -> bytes:
        chunk = self._read1(size)
        self.hash.update(chunk)
        return chunk

    def read(self, size: int = -1) -> bytes:
        size = size if size > 0 else CHUNK_SIZE
        if self._unread:
            chunk, self._unread = self._unread[:size], self._unread[size:]
            return chunk
        return self._raw(size)

    def close(self) -> None:
        if self._file is not sys.stdin.buffer:
            self._file.close()


class ByteSource:
    """The input's content in chunks, read in a worker thread (a Ctrl-C lands between chunks).

    Compression is told by the first bytes, never by the name: a `.csv.gz` that a browser already
    unpacked is read as it is, and a gzip stream on stdin is unpacked. The hash is of the bytes as
    stored (compressed or not): it fingerprints the input for job identity.
    """

    def __init__(self, path: str, name: str | None = None) -> None:
        self._path = path
        self._name = name or path
        self._raw: _HashedRaw | None = None
        self._reader: Readable | None = None
        self.compression: str | None = None

    @property
    def path(self) -> str:
        return self._path

    async def open(self) -> None:
        self._raw, self.compression = await asyncio.to_thread(self._open)
        self._reader = self._raw
        if self.compression is not None:
            self._reader = decompressing(self.compression, self._raw, self._name)

    def _open(self) -> tuple[_HashedRaw, str | None]:
        file: BinaryIO = sys.stdin.buffer if self._path == "-" else open(self._path, "rb")  # noqa: SIM115
        raw = _HashedRaw(file)
        try:
            return raw, compression_of(raw.peek_head())
        except BaseException:
            raw.close()
            raise

    async def read(self) -> bytes:
        """The next chunk of content (decompressed), b"" at the end."""
        assert self._reader is not None, "open() first"
        return await asyncio.to_thread(self._reader.read, CHUNK_SIZE)

    async def drain(self) -> None:
        """Read the rest of the stored bytes into the hash (for a parser that reads the file itself)."""
        assert self._raw is not None, "open() first"
        raw = self._raw
        while await asyncio.to_thread(raw.read, CHUNK_SIZE):
            pass

    def hexdigest(self) -> str:
        assert self._raw is not None, "open() first"
        return self._raw.hash.hexdigest()

    async def close(self) -> None:
        if self._raw is not None:
            self._raw.close()
            self._raw = self._reader = None


def content_hint(head: bytes, compression: str | None) -> str:
    """Why text that is not UTF-8 may be something else, from its first bytes ("" when nothing fits)."""
    inside = f" inside the {compression} data" if compression else ""
    if head.startswith((GZIP_MAGIC, ZSTD_MAGIC)):
        again = " again" if compression else ""
        return f"; it{inside} is compressed{again}: gembulk unpacks one layer, so decompress it once first"
    if head.startswith(b"PK\x03\x04"):
        return f"; it{inside} looks like a ZIP archive (an .xlsx workbook?): export or unpack it as CSV first"
    if head.startswith(b"BZh"):
        return f"; it{inside} looks bzip2-compressed (gembulk reads gzip and zstd): run bunzip2 first"
    if head.startswith(b"\xfd7zXZ\x00"):
        return f"; it{inside} looks xz-compressed (gembulk reads gzip and zstd): run unxz first"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return f"; it{inside} looks like UTF-16 text (Excel's 'Unicode text'): save it as UTF-8 (CSV UTF-8)"
    if head.startswith(PARQUET_MAGIC):
        return f"; it{inside} looks like a Parquet file: name it .parquet or pass --input-format parquet"
    return ""


def _utf8_error(name: str, newlines_before: int, exc: UnicodeDecodeError, hint: str) -> InputError:
    line = newlines_before + exc.object[: exc.start].count(b"\n") + 1
    bad = exc.object[exc.start : exc.start + 1].hex()
    return InputError(f"{name}:{line}: invalid UTF-8 (byte 0x{bad}); the input must be UTF-8 text{hint}")


async def text_chunks(source: ByteSource, name: str) -> AsyncIterator[str]:
    """UTF-8 text of the input in chunks, without a leading BOM."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    newlines = 0
    head = b""  # the first bytes, for a hint when they are not text at all
    at_start = True
    while chunk := await source.read():
        if len(head) < 8:
            head += chunk[: 8 - len(head)]
        try:
            text = decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise _utf8_error(name, newlines, exc, content_hint(head, source.compression)) from None
        newlines += chunk.count(b"\n")
        if at_start and text:
            text = text.removeprefix("\ufeff")
            at_start = False
        if text:
            yield text
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError as exc:
        raise _utf8_error(name, newlines, exc, content_hint(head, source.compression)) from None


def is_stream(path: str) -> bool:
    """Whether the input can be read only once: stdin, a FIFO, a process substitution (/dev/fd/N)."""
    if path == "-":
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _copy_chunk(src: BinaryIO, dst: BinaryIO) -> int:
    read = getattr(src, "read1", src.read)
    chunk = read(CHUNK_SIZE)
    dst.write(chunk)
    return len(chunk)


async def spool_stream(path: str, tmp_dir: str | None = None, prefix: str = "gembulk-stdin-") -> str:
    """Copy stdin ("-") or a pipe to a temporary file and return its path (the caller deletes it).

    It can be read once, but the tool needs a validating pass before the real one. The copy holds the
    bytes as they came (compressed or not). One thread hop per chunk keeps memory flat and lets a
    Ctrl-C land between chunks.
    """
    try:
        # A FIFO's open waits for its writer: in a thread, so Ctrl-C is still heard.
        src: BinaryIO = sys.stdin.buffer if path == "-" else await asyncio.to_thread(open, path, "rb")
    except OSError as exc:
        raise InputError(f"{path}: cannot open input: {exc.strerror or exc}") from None
    fd, spool = tempfile.mkstemp(prefix=prefix, suffix=".gembulk-tmp", dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as dst:
            while await asyncio.to_thread(_copy_chunk, src, dst):
                pass
    except BaseException:
        os.unlink(spool)
        raise
    finally:
        if src is not sys.stdin.buffer:
            src.close()
    return spool


async def spool_stdin(tmp_dir: str | None = None, prefix: str = "gembulk-stdin-") -> str:
    """Copy stdin to a temporary file and return its path (the caller deletes it)."""
    return await spool_stream("-", tmp_dir, prefix)
