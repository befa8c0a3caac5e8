"""Compressed inputs: gzip and zstd told by their first bytes, read as a stream with bounded memory."""

from __future__ import annotations

import gzip
import zlib
from typing import Protocol

from gembulk.compressed import zstd_decompressor
from gembulk.errors import InputError

PARQUET_MAGIC = b"PAR1"
MAGIC_SIZE = 4  # bytes needed to tell gzip, zstd and Parquet apart

# Compressed bytes fed to the zstandard decompressor per call: its output is not bounded, and a zstd
# frame can expand 32,000-fold, so small bites keep one call's output (and memory) in the megabytes.
_ZSTD_BITE = 1024

ZSTD_MISSING = (
    "reading zstd-compressed input needs the zstandard package: pip install 'gembulk[zstd]' "
    "(or decompress it first: zstd -d FILE)"
)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def decompressing(compression: str, raw: Readable, name: str) -> Readable:
    """A reader of the decompressed bytes of raw; read(n) returns at most n bytes, b"" at the end."""
    if compression == "gzip":
        return _GzipReader(raw, name)
    return _ZstdReader(raw, name)


class _GzipReader:
    """gzip.GzipFile (several members, as `cat a.gz b.gz` makes, and zero padding) with one-line errors."""

    def __init__(self, raw: Readable, name: str) -> None:
        self._file = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[arg-type]
        self._name = name

    def read(self, size: int = -1) -> bytes:
        try:
            return self._file.read1(size)
        except EOFError:
            raise InputError(f"{self._name}: the gzip data ends early (a truncated file?)") from None
        except (OSError, zlib.error) as exc:
            raise InputError(f"{self._name}: corrupt gzip data ({exc})") from None


class _ZstdReader:
    """zstd frames one after another; a stream that stops inside a frame is an error, not a short input
    (zstandard's own stream reader ends silently there, which would drop rows without a word)."""

    def __init__(self, raw: Readable, name: str) -> None:
        self._raw = raw
        self._name = name
        self._decoder = zstd_decompressor(ZSTD_MISSING)
        self._pending = b""  # compressed bytes read but not yet fed
        self._ended = False

    def read(self, size: int = -1) -> bytes:
        size = size if size > 0 else 256 * 1024
        out: list[bytes] = []
        produced = 0
        while produced < size and not self._ended:
            piece = self._next_piece()
            out.append(piece)
            produced += len(piece)
        return b"".join(out)

    def _next_piece(self) -> bytes:
        if not self._pending:
            self._pending = self._raw.read(64 * 1024)
            if not self._pending:
                self._ended = True
                if not self._decoder.eof:
                    raise InputError(f"{self._name}: the zstd data ends early (a truncated file?)")
                return b""
        if self._decoder.eof:  # the next frame starts here
            self._decoder = zstd_decompressor(ZSTD_MISSING)
        bite, self._pending = self._pending[:_ZSTD_BITE], self._pending[_ZSTD_BITE:]
        try:
            piece = self._decoder.decompress(bite)
        except Exception as exc:  # zstandard.ZstdError / compression.zstd.ZstdError: no common base
            raise InputError(f"{self._name}: corrupt zstd data ({exc})") from None
        if self._decoder.eof:
            self._pending = self._decoder.unused_data + self._pending
        return piece
