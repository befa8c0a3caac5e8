"""Compressed outputs (.gz, .zst): one gzip member or zstd frame per written batch, so a crash tears at
most the last one, which resume finds and drops; read back member by member; rewritten as one stream."""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from typing import Any, BinaryIO, Protocol

from gembulk.compressed import SUFFIXES, is_zstandard, zstd_decompressor, zstd_module
from gembulk.errors import InputError

# Batches are compressed fast while a run writes them; the rewrite at the end of a run (one stream for
# the whole file) uses each tool's own default level.
GZIP_LEVEL, GZIP_FAST = 6, 1
ZSTD_LEVEL, ZSTD_FAST = 3, 1
CHUNK = 256 * 1024

ZSTD_MISSING = (
    "writing zstd-compressed output needs the zstandard package: pip install 'gembulk[zstd]' "
    "(or write .gz, or plain output and compress it afterwards)"
)


def output_compression(path: str) -> str | None:
    """gzip or zstd when OUT's name ends in .gz/.zst; stdout ("-") is never compressed (pipe it)."""
    if path == "-":
        return None
    return SUFFIXES.get(os.path.splitext(path)[1].lower())


def without_compression_suffix(path: str) -> str:
    """OUT's name without .gz/.zst: what is left says the format of the records inside."""
    stem, extension = os.path.splitext(path)
    return stem if extension.lower() in SUFFIXES else path


def check_available(compression: str | None) -> None:
    """Refuse at the start, with the package to install, a compression this Python cannot write."""
    if compression == "zstd":
        zstd_module(ZSTD_MISSING)


class _Codec(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


def member(compression: str, data: bytes, *, fast: bool = False) -> bytes:
    """`data` as one complete gzip member or zstd frame."""
    if compression == "gzip":
        return gzip.compress(data, GZIP_FAST if fast else GZIP_LEVEL, mtime=0)
    zstd = zstd_module(ZSTD_MISSING)
    level = ZSTD_FAST if fast else ZSTD_LEVEL
    if is_zstandard(zstd):
        compressor = _zstd_compressors.get(level)
        if compressor is None:
            compressor = _zstd_compressors[level] = zstd.ZstdCompressor(level=level)
        return bytes(compressor.compress(data))
    return bytes(zstd.compress(data, level=level))


_zstd_compressors: dict[int, Any] = {}  # one zstandard compressor per level, used from the event loop


def never_empty(path: str, compression: str) -> None:
    """A finished compressed output with no record at all gets an empty member, so that `zcat` reads an
    empty file, not a broken one."""
    if os.path.getsize(path) == 0:
        with open(path, "ab") as handle:
            handle.write(member(compression, b""))
            handle.flush()
            os.fsync(handle.fileno())


def _stream_codec(compression: str) -> _Codec:
    if compression == "gzip":
        return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # type: ignore[return-value]
    zstd = zstd_module(ZSTD_MISSING)
    if is_zstandard(zstd):
        return zstd.ZstdCompressor(level=ZSTD_LEVEL).compressobj()  # type: ignore[no-any-return]
    return zstd.ZstdCompressor(level=ZSTD_LEVEL)  # type: ignore[no-any-return]


class CompressingFile:
    """A binary file written through one streaming gzip member or zstd frame (rewrites of OUT)."""

    def __init__(self, target: BinaryIO, compression: str) -> None:
        self._target = target
        self._codec = _stream_codec(compression)

    def write(self, data: bytes) -> None:
        self._target.write(self._codec.compress(data))

    def close(self) -> None:
        """End the member (the target stays open: its owner syncs and closes it)."""
        self._target.write(self._codec.flush())


def _decompressor(compression: str) -> Any:
    if compression == "gzip":
        return zlib.decompressobj(31)
    return zstd_decompressor(ZSTD_MISSING)


def _corrupt(path: str, compression: str, exc: Exception) -> InputError:
    return InputError(f"{path}: corrupt {compression} data ({exc}); not an output gembulk can resume")


def _members(path: str, compression: str, limit: int | None = None) -> Iterator[tuple[bytes, int]]:
    """(plain piece, -1) for each decompressed piece, then (b"", offset) where each member ends; reads
    the first `limit` bytes only when given. An incomplete last member ends the walk quietly."""
    consumed = 0
    decoder = None
    with open(path, "rb") as handle:
        while (limit is None or consumed < limit) and (
            chunk := handle.read(CHUNK if limit is None else min(CHUNK, limit - consumed))
        ):
            while chunk:
                if decoder is None:
                    decoder = _decompressor(compression)
                try:
                    piece = decoder.decompress(chunk)
                except Exception as exc:  # zlib.error, zstandard.ZstdError: no common base
                    raise _corrupt(path, compression, exc) from None
                if piece:
                    yield piece, -1
                if not decoder.eof:
                    consumed += len(chunk)
                    break
                rest = decoder.unused_data
                consumed += len(chunk) - len(rest)
                yield b"", consumed
                decoder = None
                chunk = rest


def _zero_tail(path: str, start: int) -> bool:
    """Whether the file holds only zero bytes from `start` on (what a power cut can leave after a write)."""
    with open(path, "rb") as handle:
        handle.seek(start)
        while chunk := handle.read(CHUNK):
            if chunk.count(0) != len(chunk):
                return False
    return True


def plain_head(path: str, compression: str, size: int = 256) -> bytes:
    """The first plain bytes of a compressed file (fewer when its first member is short or torn)."""
    head = b""
    with contextlib.suppress(InputError), contextlib.closing(_members(path, compression, CHUNK)) as pieces:
        for piece, _ in pieces:  # an error is reported by the scan that follows
            head += piece
            if len(head) >= size:
                break
    return head[:size]


def complete_end(path: str, compression: str) -> int:
    """Offset where the file's complete members end. gembulk writes one member per batch, so a crash can
    only leave the last one incomplete (or zeros after it), and truncating there drops exactly the torn
    batch; anything else that does not decompress is refused, never cut."""
    end = 0
    try:
        for _, boundary in _members(path, compression):
            if boundary >= 0:
                end = boundary
    except InputError:
        if not _zero_tail(path, end):
            raise
    return end


def plain_chunks(path: str, compression: str, end: int) -> Iterator[bytes]:
    """The decompressed bytes of the file's first `end` bytes (complete members), piece by piece."""
    for piece, _ in _members(path, compression, end):
        if piece:
            yield piece


def decompress_to(path: str, compression: str, end: int, target: BinaryIO) -> dict[int, int]:
    """Write the plain bytes of the first `end` bytes to `target`; returns each member boundary's
    compressed offset -> plain offset (where a run's own records start in the plain copy)."""
    boundaries = {0: 0}
    plain = 0
    for piece, boundary in _members(path, compression, end):
        if boundary >= 0:
            boundaries[boundary] = plain
        else:
            target.write(piece)
            plain += len(piece)
    return boundaries
